package store

import (
	"cmp"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The change feed's history of the commit log (issue 18).
//
// A log file the store no longer needs (every record in it is in a
// snapshot: the generations a rotation drops, the files a clean Close
// replaces with an empty generation, the files recovery replayed at Open)
// is not deleted but renamed "hist-" + its name in LogDir. Recovery never
// reads these files (listLogs takes only "sq-" names), so they cannot
// replay anything twice, hold up a restart or stop an operator from
// replacing a snapshot while the server is stopped; only the feed's read
// back (feedlog.go) reads them, to replay a resuming watcher's changes
// from a position older than the live log: across a clean restart, or
// after a rotation.
//
// Every removal of a log file goes through retireLog, so history and live
// files together are every generation from the oldest kept one on, with
// consecutive numbers (an empty generation is kept too, 32 bytes). Where
// a file could not be renamed and was deleted, the numbers have a gap and
// the read back uses only the generations after it (feedLogFiles). The
// history is bounded by Options.LogKeepBytes: whole generations are
// dropped oldest first (stopping at a failed removal, so what stays is
// still consecutive), and by maxHistFiles.

// DefaultLogKeep is sq host's default Options.LogKeepBytes.
const DefaultLogKeep = 64 << 20

// histPrefix marks a log file kept only for the change feed.
const histPrefix = "hist-"

// maxHistFiles bounds the history's files whatever their size (a restart
// or rotation adds at least one).
const maxHistFiles = 1024

// histFile is a history file.
type histFile struct {
	logFile
	size int64
}

// listHist returns the history files, oldest generation first.
func (s *Store) listHist() ([]histFile, error) {
	ents, err := os.ReadDir(s.logDir)
	if err != nil {
		return nil, err
	}
	var out []histFile
	for _, e := range ents {
		name, ok := strings.CutPrefix(e.Name(), histPrefix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		gen, w, ok := parseLogName(name)
		if !ok {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, histFile{logFile{path: filepath.Join(s.logDir, e.Name()), gen: gen, writer: w}, fi.Size()})
	}
	slices.SortFunc(out, func(a, b histFile) int { return cmp.Compare(a.gen, b.gen) })
	return out, nil
}

// histPath is where lf goes when it is retired.
func histPath(lf logFile) string {
	return filepath.Join(filepath.Dir(lf.path), histPrefix+filepath.Base(lf.path))
}

// retireLog takes lf out of the live log: renamed into the history, or
// deleted when the history is off or the rename fails (the history then
// has a gap before the next generation). An error means lf is still there.
func (s *Store) retireLog(lf logFile) error {
	if s.opts.LogKeepBytes > 0 && !s.tmpLogDir {
		if err := s.fs.Rename(lf.path, histPath(lf)); err == nil {
			return nil
		}
	}
	if err := s.fs.Remove(lf.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// pruneHist drops history files oldest first until what is left fits
// LogKeepBytes and maxHistFiles; all of it when it holds a generation at
// or above cur (the live log restarted its numbering: an emptied log dir),
// which it cannot continue. The caller fsyncs LogDir.
func (s *Store) pruneHist(cur uint64) {
	hs, err := s.listHist()
	if err != nil || len(hs) == 0 {
		return
	}
	// The newest whole generations that fit stay.
	keep := len(hs)
	var total int64
	for i := len(hs) - 1; i >= 0; i-- {
		if hs[i].gen >= cur {
			keep = len(hs)
			break
		}
		total += hs[i].size
		if total > s.opts.LogKeepBytes || len(hs)-i > maxHistFiles {
			break
		}
		if i == 0 || hs[i-1].gen != hs[i].gen {
			keep = i // every file of generation hs[i].gen fits
		}
	}
	if s.opts.LogKeepBytes <= 0 {
		keep = len(hs)
	}
	for _, h := range hs[:keep] {
		if err := s.fs.Remove(h.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			// Oldest first, stopping here: what stays is consecutive.
			s.log.Warn("store: removing an old change-feed history file", "path", h.path, "err", err)
			return
		}
	}
}

// feedLogFiles returns the log files the feed's read back may use, oldest
// generation first: the history and the live files, from the oldest
// generation after which none is missing. A file listed live that is
// renamed meanwhile is found in the history (live files are listed first,
// so no file can be missed by moving between the two listings).
func (s *Store) feedLogFiles() ([]logFile, error) {
	live, err := s.listLogs()
	if err != nil {
		return nil, err
	}
	hs, err := s.listHist()
	if err != nil {
		return nil, err
	}
	type key struct {
		gen    uint64
		writer string
	}
	seen := make(map[key]bool, len(live))
	files := make([]logFile, 0, len(live)+len(hs))
	for _, lf := range live {
		seen[key{lf.gen, lf.writer}] = true
		files = append(files, lf)
	}
	for _, h := range hs {
		if !seen[key{h.gen, h.writer}] {
			files = append(files, h.logFile)
		}
	}
	slices.SortStableFunc(files, func(a, b logFile) int { return cmp.Compare(a.gen, b.gen) })
	start := 0
	for i := 1; i < len(files); i++ {
		if files[i].gen > files[i-1].gen+1 {
			start = i // generations missing before this one
		}
	}
	return files[start:], nil
}

// readLogFile reads lf, or its history copy when it was retired after it
// was listed.
func (s *Store) readLogFile(lf logFile) ([]byte, error) {
	data, err := readAll(s.fs, lf.path)
	if err != nil && !strings.HasPrefix(filepath.Base(lf.path), histPrefix) {
		data, err = readAll(s.fs, histPath(lf))
	}
	return data, err
}
