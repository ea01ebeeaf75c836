package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/phext"
)

func mustCoord(t *testing.T, s string) phext.Coordinate {
	t.Helper()
	c, err := phext.ParseCoordinate(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// seedTenant writes a few scrolls in the default phext and in "notes" and
// returns the checksums by phext name.
func seedTenant(t *testing.T, ctx context.Context, c *client.Conn) map[string]string {
	t.Helper()
	for _, w := range []struct{ phext, coord, text string }{
		{phext: "", coord: "1.1.1/1.1.1/1.1.1", text: "first"},
		{phext: "", coord: "1.1.1/1.1.1/1.1.2", text: "second"},
		{phext: "", coord: "2.1.1/1.1.1/1.1.1", text: "other library"},
		{phext: "notes", coord: "1.1.1/1.1.1/1.1.1", text: "a note"},
		{phext: "notes", coord: "9.9.9/9.9.9/9.9.9", text: "far away"},
	} {
		if _, err := c.Update(ctx, w.phext, mustCoord(t, w.coord), []byte(w.text)); err != nil {
			t.Fatal(err)
		}
	}
	sums := map[string]string{}
	for _, n := range []string{"", "notes"} {
		s, err := c.Checksum(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		sums[n] = s
	}
	return sums
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	ts := startTestServer(t, "alpha", "beta")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := client.Dial(ctx, ts.addr, ts.tokens["alpha"])
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	sums := seedTenant(t, ctx, a)
	dir := filepath.Join(t.TempDir(), "bk")

	var out, errb bytes.Buffer
	if code := runBackup([]string{"--addr", ts.addr, "--token", ts.tokens["alpha"], dir}, &out, &errb); code != 0 {
		t.Fatalf("backup exit %d: %s", code, errb.String())
	}
	for name, file := range map[string]string{"": ".phext", "notes": "notes.phext"} {
		doc, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if got := phext.Checksum(doc); got != sums[name] {
			t.Errorf("%s: file checksum %s, server had %s", file, got, sums[name])
		}
	}
	man, _ := os.ReadFile(filepath.Join(dir, backupManifest))
	if !strings.Contains(string(man), sums["notes"]+"  notes.phext\n") {
		t.Errorf("manifest:\n%s", man)
	}

	// A second backup into the same directory needs --force.
	if code := runBackup([]string{"--addr", ts.addr, "--token", ts.tokens["alpha"], dir}, &out, &errb); code != 2 {
		t.Errorf("backup over an existing backup: exit %d, want 2", code)
	}

	// Restore into another tenant: same checksums there.
	out.Reset()
	errb.Reset()
	if code := runRestore([]string{"--addr", ts.addr, "--token", ts.tokens["beta"], dir}, &out, &errb); code != 0 {
		t.Fatalf("restore exit %d: %s", code, errb.String())
	}
	b, err := client.Dial(ctx, ts.addr, ts.tokens["beta"])
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for name, want := range sums {
		got, err := b.Checksum(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("beta %q: checksum %s, want %s", name, got, want)
		}
	}
	txt, err := b.Select(ctx, "notes", mustCoord(t, "9.9.9/9.9.9/9.9.9"))
	if err != nil || string(txt) != "far away" {
		t.Errorf("beta notes 9.9.9/9.9.9/9.9.9 = %q, %v", txt, err)
	}

	// Restore over changed data puts the backup's state back.
	if _, err := a.Update(ctx, "", mustCoord(t, "1.1.1/1.1.1/1.1.1"), []byte("changed")); err != nil {
		t.Fatal(err)
	}
	if code := runRestore([]string{"--addr", ts.addr, "--token", ts.tokens["alpha"], "--phexts", "(default)", dir}, &out, &errb); code != 0 {
		t.Fatalf("restore exit %d: %s", code, errb.String())
	}
	if got, _ := a.Checksum(ctx, ""); got != sums[""] {
		t.Errorf("after restore: checksum %s, want %s", got, sums[""])
	}
}

func TestRestoreRefusesDamagedBackupAndSendsNothing(t *testing.T) {
	ts := startTestServer(t, "alpha")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, ts.addr, ts.tokens["alpha"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sums := seedTenant(t, ctx, c)
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := runBackup([]string{"--addr", ts.addr, "--token", ts.tokens["alpha"], "--force", dir}, &out, &errb); code != 0 {
		t.Fatalf("backup exit %d: %s", code, errb.String())
	}
	// Change the server's data so a restore would be visible.
	if _, err := c.Update(ctx, "", mustCoord(t, "1.1.1/1.1.1/1.1.1"), []byte("live")); err != nil {
		t.Fatal(err)
	}
	live, _ := c.Checksum(ctx, "")

	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T)
		wantErr string
	}{
		{name: "flipped-byte", wantErr: "checksum", damage: func(t *testing.T) {
			p := filepath.Join(dir, "notes.phext")
			b, _ := os.ReadFile(p)
			b[0] ^= 0x20
			os.WriteFile(p, b, 0o640)
		}},
		{name: "missing-file", wantErr: "notes.phext", damage: func(t *testing.T) {
			os.Remove(filepath.Join(dir, "notes.phext"))
		}},
		{name: "bad-manifest-line", wantErr: "line 1", damage: func(t *testing.T) {
			os.WriteFile(filepath.Join(dir, backupManifest), []byte("xyz  ../etc.phext\n"), 0o640)
		}},
		{name: "no-manifest", wantErr: "not a complete backup", damage: func(t *testing.T) {
			os.Remove(filepath.Join(dir, backupManifest))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.damage(t)
			out.Reset()
			errb.Reset()
			if code := runRestore([]string{"--addr", ts.addr, "--token", ts.tokens["alpha"], dir}, &out, &errb); code != 1 {
				t.Fatalf("exit %d, want 1 (stderr %q)", code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("stderr %q does not mention %q", errb.String(), tc.wantErr)
			}
			if got, _ := c.Checksum(ctx, ""); got != live {
				t.Errorf("default phext changed by a refused restore: %s, want %s", got, live)
			}
		})
	}
	_ = sums
}

func TestBackupUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cmd      func([]string, *bytes.Buffer, *bytes.Buffer) int
		args     []string
		wantCode int
		wantErr  string
	}{
		{name: "backup-no-dir", cmd: wrapRun(runBackup), args: []string{"--token", "x"}, wantCode: 2, wantErr: "one directory"},
		{name: "backup-no-token", cmd: wrapRun(runBackup), args: []string{"--token", "", "d"}, wantCode: 2, wantErr: "no token"},
		{name: "restore-two-dirs", cmd: wrapRun(runRestore), args: []string{"--token", "x", "a", "b"}, wantCode: 2, wantErr: "one directory"},
		{name: "restore-bad-filter", cmd: wrapRun(runRestore), args: []string{"--token", "x", "--phexts", "bad/name", t.TempDir()}, wantCode: 2, wantErr: "bad phext name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := tc.cmd(tc.args, &out, &errb); code != tc.wantCode {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tc.wantCode, errb.String())
			}
			if !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("stderr %q does not mention %q", errb.String(), tc.wantErr)
			}
		})
	}
}

func wrapRun(f func([]string, io.Writer, io.Writer) int) func([]string, *bytes.Buffer, *bytes.Buffer) int {
	return func(a []string, o, e *bytes.Buffer) int { return f(a, o, e) }
}

// TestBackupUnderConcurrentWrites takes a backup while another connection
// keeps rewriting the phext: every file must still be a state the server
// held (its checksum is one the writer produced).
func TestBackupUnderConcurrentWrites(t *testing.T) {
	ts := startTestServer(t, "alpha")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, ts.addr, ts.tokens["alpha"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seedTenant(t, ctx, c)
	var (
		mu    sync.Mutex
		valid = map[string]bool{}
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	first, _ := c.Checksum(ctx, "")
	valid[first] = true
	wg.Add(1)
	go func() {
		defer wg.Done()
		coord := mustCoord(t, "5.5.5/5.5.5/5.5.5")
		for i := 0; !stop.Load() && i < 2000; i++ {
			// One writer, so each state is followed by its checksum
			// before the next write.
			if _, err := c.Update(ctx, "", coord, []byte(strings.Repeat("x", i%50+1))); err != nil {
				return
			}
			s, err := c.Checksum(ctx, "")
			if err != nil {
				return
			}
			mu.Lock()
			valid[s] = true
			mu.Unlock()
		}
	}()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := runBackup([]string{"--addr", ts.addr, "--token", ts.tokens["alpha"], "--force", "--phexts", "(default)", dir}, &out, &errb)
	stop.Store(true)
	wg.Wait()
	if code != 0 {
		// Five changed reads in a row are possible under a tight loop;
		// the error must say so rather than write a torn file.
		if !strings.Contains(errb.String(), "still changing") {
			t.Fatalf("backup exit %d: %s", code, errb.String())
		}
		return
	}
	doc, err := os.ReadFile(filepath.Join(dir, ".phext"))
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !valid[phext.Checksum(doc)] {
		t.Fatalf("backup holds a state the server never reported (checksum %s)", phext.Checksum(doc))
	}
}

func TestParseManifest(t *testing.T) {
	const sum = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name    string
		in      string
		want    []string // phext names, in order
		wantErr string
	}{
		{name: "two", in: sum + "  notes.phext\n" + sum + "  .phext\n", want: []string{"", "notes"}},
		{name: "empty", in: "", want: nil},
		{name: "no-newline-at-end", in: sum + "  a.phext", want: []string{"a"}},
		{name: "traversal", in: sum + "  ../x.phext\n", wantErr: "line 1"},
		{name: "subdir", in: sum + "  d/x.phext\n", wantErr: "line 1"},
		{name: "not-phext", in: sum + "  x.txt\n", wantErr: "line 1"},
		{name: "short-sum", in: "abc  x.phext\n", wantErr: "line 1"},
		{name: "upper-hex", in: "0123456789ABCDEF0123456789abcdef  x.phext\n", wantErr: "line 1"},
		{name: "one-space", in: sum + " x.phext\n", wantErr: "line 1"},
		{name: "duplicate", in: sum + "  x.phext\n" + sum + "  x.phext\n", wantErr: "twice"},
		{name: "bad-second-line", in: sum + "  x.phext\nnonsense\n", wantErr: "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ents, err := parseManifest([]byte(tc.in), nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range ents {
				got = append(got, e.name)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") || len(got) != len(tc.want) {
				t.Fatalf("names %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzParseManifest: whatever a backup directory's CHECKSUMS holds, an
// accepted entry names a plain file inside the directory.
func FuzzParseManifest(f *testing.F) {
	const sum = "0123456789abcdef0123456789abcdef"
	f.Add([]byte(sum + "  notes.phext\n" + sum + "  .phext\n"))
	f.Add([]byte(sum + "  ../../etc/passwd.phext\n"))
	f.Add([]byte(""))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ents, err := parseManifest(data, nil)
		if err != nil {
			return
		}
		for _, e := range ents {
			if filepath.Base(e.file) != e.file || e.file == ".." || strings.ContainsAny(e.file, "/\\\x00") {
				t.Fatalf("accepted file %q escapes the directory", e.file)
			}
			if e.file != e.name+".phext" || !isHex32(e.sum) {
				t.Fatalf("inconsistent entry %+v", e)
			}
		}
	})
}
