package store

import (
	"cmp"
	"errors"
	"fmt"
	"github.com/phext/sq/phext"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Durability says when a write is acknowledged relative to the fsync of
// the commit log.
type Durability uint8

const (
	// DurabilityDefault inherits: a tenant with it uses the Store's mode, a
	// Store with it uses DurabilityEverySec.
	DurabilityDefault Durability = iota
	// DurabilityAlways acknowledges a write only after its commit log
	// record was fsynced. Concurrent writers of all tenants share one fsync.
	DurabilityAlways
	// DurabilityEverySec acknowledges after the record's write(); the
	// shared commit log is fsynced at least once per SyncInterval, so a power
	// loss may lose about that much of acknowledged writes, never a partial
	// record (kill -9 loses nothing written).
	DurabilityEverySec
	// DurabilityNo acknowledges after the record's write() and asks for no
	// fsync; the commit log is shared, so its records are fsynced with the
	// others' (the syncer, Sync, checkpoints, Close) all the same.
	DurabilityNo
)

// String returns "default", "always", "everysec" or "no".
func (d Durability) String() string {
	switch d {
	case DurabilityDefault:
		return "default"
	case DurabilityAlways:
		return "always"
	case DurabilityEverySec:
		return "everysec"
	case DurabilityNo:
		return "no"
	}
	return fmt.Sprintf("Durability(%d)", uint8(d))
}

// ParseDurability parses "always", "everysec" or "no" ("" and "default"
// give DurabilityDefault).
func ParseDurability(s string) (Durability, error) {
	switch s {
	case "always":
		return DurabilityAlways, nil
	case "everysec":
		return DurabilityEverySec, nil
	case "no":
		return DurabilityNo, nil
	case "", "default":
		return DurabilityDefault, nil
	}
	return DurabilityDefault, fmt.Errorf("store: unknown durability %q (want always, everysec or no)", s)
}

// Options configures a Store. The zero value (or a nil *Options) means the
// defaults named on each field.
type Options struct {
	// Durability is the default mode of tenants that do not set one
	// (default DurabilityEverySec).
	Durability Durability
	// MaxOpenPhexts caps the phexts open at once over all tenants (default
	// 256); past it the least recently used clean ones are closed, and
	// dirty ones (records in the commit log) are checkpointed in the
	// background first, so the set may exceed the cap by phexts waiting
	// for that (see Store.register), up to a hard ceiling of
	// max(2 × cap, cap + 256) and never above half of vm.max_map_count
	// (read at Open; a cap too high for it is lowered to half the
	// ceiling). At the ceiling an opener of a phext not open yet waits
	// up to OpenWait for the evictor to close one, then gets ErrBusy.
	// An open phext holds one mapping and no file descriptor.
	MaxOpenPhexts int
	// OpenWait is how long an opener of a phext not open yet waits at
	// the ceiling of open phexts (see MaxOpenPhexts) before ErrBusy
	// (default 2s). Phexts already open never wait.
	OpenWait time.Duration
	// CompactMinWAL is the size of a phext's records in the commit log past
	// which it is checkpointed, when they are also larger than half the
	// snapshot (default 4 MiB).
	CompactMinWAL int64
	// SyncInterval is the everysec fsync period (default 1s).
	SyncInterval time.Duration
	// Logger receives the store's log records (default slog.Default()).
	Logger *slog.Logger
	// FS is the file-system seam for fault injection (nil = the OS).
	FS FS
	// LogDir holds the commit log shared by all tenants (created 0o750 if
	// missing; one Store at a time: it is locked). Empty means a fresh
	// temporary directory removed by Close: crash recovery cannot find it,
	// so only tests leave it empty (`sq host` always sets it).
	LogDir string
	// LoopLogs is the number of event loop logs (default 0): an event
	// loop's rounds (LoopRound, SetLoop) write loop i's log, "l<i>" of
	// each generation, which no other writer touches, so the loops never
	// wait for each other's rounds; the worker path keeps the "w" log.
	// With 0, rounds write the worker log (and hold its write side). The
	// syncer fsyncs each written log once per SyncInterval. At most
	// MaxLoopLogs: loops past it share a log (loop i writes log i mod n).
	LoopLogs int
	// LogRotateBytes is the log size past which a new generation starts
	// and the old one is truncated away once every phext with records in
	// it was checkpointed (default 256 MiB).
	LogRotateBytes int64
	// LogKeepBytes bounds the change feed's history (loghist.go): log
	// files the store no longer needs (dropped after a rotation, at a
	// clean Close or after recovery at Open) are kept, renamed out of
	// recovery's way, oldest dropped first past this many bytes, so that
	// a watcher can resume from a position older than the live log, also
	// across a restart. 0 or negative: none, every such file is deleted
	// (sq host keeps DefaultLogKeep unless told otherwise).
	LogKeepBytes int64
	// MaxSnapshot is the largest serialized document a phext may reach
	// (default and maximum 4 GiB − 1, what the snapshot index can map);
	// a write that could take it further is refused with ErrTooLarge and
	// nothing is written. Tests set it small.
	MaxSnapshot int64
}

// FDsPerOpenPhext is the most file descriptors an open phext holds, for
// sizing MaxOpenPhexts against the open-file limit: none since the commit
// log is shared (the snapshot is mapped and its descriptor closed; a
// checkpoint holds one for its duration).
const FDsPerOpenPhext = 0

// closeParallelism bounds the goroutines of a batched close (snapshot
// writes, directory fsyncs).
const closeParallelism = 16

// Store owns tenants and their phexts. All methods are safe for concurrent
// use; they block on disk I/O, so call them from worker goroutines, never
// from an event loop.
type Store struct {
	opts Options
	fs   FS
	log  *slog.Logger

	mu      sync.RWMutex // guards tenants, dirs, dirProbes, closed
	tenants map[string]*Tenant
	// dirs maps each registered tenant's data dir, by device and inode,
	// to its tenant: one lookup per AddTenant finds a second tenant on the
	// same dir (also through a symlink or bind-mount alias) whatever the
	// number of tenants.
	dirs      map[dirID]*Tenant
	dirProbes uint64 // data-dir identity lookups (a test seam: stays linear)
	closed    bool

	compactions     atomic.Uint64
	compactFailures atomic.Uint64
	compactReplaced atomic.Uint64 // background compactions a Put made useless
	rewrites        atomic.Uint64 // phexts checkpointed from memory after a failed log fsync

	// The commit log (log.go, recover.go).
	logDir      string
	tmpLogDir   bool // LogDir was a temporary directory: removed by Close
	lockF       *os.File
	wlog        *commitLog
	loopLogs    []*commitLog  // the event loops' logs (Options.LoopLogs)
	logs        []*commitLog  // wlog, then loopLogs
	lsn         atomic.Uint64 // the last LSN handed out
	gen         atomic.Uint64 // the current generation
	suspect     atomic.Pointer[error]
	suspectSeq  atomic.Uint64
	syncRounds  atomic.Uint64 // everysec syncer rounds (a test seam)
	rotMu       sync.Mutex    // serializes rotations
	rotating    atomic.Bool
	carried     []carriedRec    // records of phexts recovery could not restore (wlog.mu)
	recCkpts    []carriedRec    // checkpoint records of what recovery restored, for the first generation (wlog.mu)
	recSnaps    []recoveredSnap // snapshots recovery rewrote, renamed once recCkpts are durable (Open only)
	droppedRecs atomic.Uint64   // records dropped at Open because their data dir no longer exists
	chainCuts   atomic.Uint64   // phexts whose records recovery stopped at a missing predecessor (chainCut)
	keepOld     bool            // recovery met a damaged record: the old logs stay
	umu         sync.Mutex      // guards unrecovered
	// unrecovered: phexts (dir + "\x00" + name) that refuse to open until
	// the next Open restores them from the logs.
	unrecovered map[string]error
	dmu         sync.Mutex // guards dirtyP, pins and keptOld
	dirtyP      map[*pfile]struct{}
	pins        map[string]uint64 // phexts (dir + "\x00" + key) a failed close left records of, from that generation on
	keptOld     uint64            // recovery met a damaged record: log files below this generation stay (for an operator)

	lmu      sync.Mutex // guards open, evicting (leaf lock)
	open     map[*pfile]struct{}
	evicting bool          // the background evictor (evictLoop) runs
	shutting bool          // Close started: no new eviction goroutines
	clock    atomic.Uint64 // LRU clock
	// spare are the least recently used phexts after the last batch's
	// victims, oldest first, with their lastUse when it was picked (lmu):
	// while that batch closes, openers past the cap take their victim
	// from here instead of scanning the whole open set.
	spare    []spareVictim
	lruScans uint64 // full scans of the open set for one victim (lmu; a test seam)
	// openCeil is the hard ceiling of open phexts (see openCeiling):
	// len(open) + opening never passes it.
	openCeil  int
	opening   int           // phexts being opened under a reservation (lmu)
	freed     chan struct{} // closed when an open slot frees, if anyone waits (lmu)
	openWaits atomic.Uint64 // openers that waited at the ceiling (a test seam)
	// openWaiting counts the openers waiting at the ceiling now: the
	// evictor checkpoints small batches meanwhile (evictCkptUrgent).
	openWaiting atomic.Int32
	// openedHook (tests only, set before the store is shared) runs in
	// Tenant.get once a phext it opened is ready, the tenant's mu held.
	openedHook func(*pfile)

	stop chan struct{}
	wg   sync.WaitGroup // syncer and background compactions
}

// Open starts a Store. A nil opts means defaults.
func Open(opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Durability == DurabilityDefault {
		o.Durability = DurabilityEverySec
	}
	if o.Durability > DurabilityNo {
		return nil, fmt.Errorf("store: bad durability %d", o.Durability)
	}
	if o.MaxOpenPhexts <= 0 {
		o.MaxOpenPhexts = 256
	}
	if o.CompactMinWAL <= 0 {
		o.CompactMinWAL = 4 << 20
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxSnapshot <= 0 || o.MaxSnapshot > defaultMaxSnapshot {
		o.MaxSnapshot = defaultMaxSnapshot
	}
	if o.FS == nil {
		o.FS = osFS{}
	}
	if o.LogRotateBytes <= 0 {
		o.LogRotateBytes = defaultLogRotate
	}
	if o.OpenWait <= 0 {
		o.OpenWait = defaultOpenWait
	}
	ceil := openCeiling(o.MaxOpenPhexts, readMaxMapCount(maxMapCountPath))
	if low := max(1, ceil/2); o.MaxOpenPhexts+evictBatch(o.MaxOpenPhexts) >= ceil && low < o.MaxOpenPhexts {
		o.Logger.Warn("store: MaxOpenPhexts lowered: each open phext is a mapping and vm.max_map_count leaves room for fewer",
			"asked", o.MaxOpenPhexts, "cap", low, "ceiling", ceil)
		o.MaxOpenPhexts = low
	}
	s := &Store{
		openCeil:    ceil,
		opts:        o,
		fs:          statFS{FS: o.FS, n: new(atomic.Uint64)},
		log:         o.Logger,
		tenants:     make(map[string]*Tenant),
		dirs:        make(map[dirID]*Tenant),
		open:        make(map[*pfile]struct{}),
		stop:        make(chan struct{}),
		unrecovered: make(map[string]error),
		dirtyP:      make(map[*pfile]struct{}),
	}
	s.wlog = newCommitLog(s, workerLog)
	s.logs = []*commitLog{s.wlog}
	for i := range min(max(o.LoopLogs, 0), MaxLoopLogs) {
		l := newCommitLog(s, loopLogName(i))
		s.loopLogs = append(s.loopLogs, l)
		s.logs = append(s.logs, l)
	}
	if o.LogDir == "" {
		d, err := os.MkdirTemp("", "sq-log-")
		if err != nil {
			return nil, fmt.Errorf("store: temporary log dir: %w", err)
		}
		s.logDir, s.tmpLogDir = d, true
	} else {
		d, err := filepath.Abs(o.LogDir)
		if err != nil {
			return nil, fmt.Errorf("store: log dir %s: %w", o.LogDir, err)
		}
		s.logDir = d
	}
	if err := s.openLogs(); err != nil {
		if s.tmpLogDir {
			os.RemoveAll(s.logDir)
		}
		return nil, err
	}
	s.wg.Add(1)
	go s.syncer()
	return s, nil
}

// maybeRotate starts a new log generation in the background once the
// current one passed LogRotateBytes.
func (s *Store) maybeRotate() {
	if s.logsBig() {
		s.kickRotate()
	}
}

// logsBig reports whether some log passed LogRotateBytes.
func (s *Store) logsBig() bool {
	for _, l := range s.logs {
		l.mu.Lock()
		big := l.size > s.opts.LogRotateBytes
		l.mu.Unlock()
		if big {
			return true
		}
	}
	return false
}

// loopLog returns the log of event loop i (the worker log when there are
// no loop logs).
func (s *Store) loopLog(i int) *commitLog {
	if len(s.loopLogs) == 0 {
		return s.wlog
	}
	return s.loopLogs[i%len(s.loopLogs)]
}

// logFaults sums the failed writes and fsyncs of every log.
func (s *Store) logFaults() uint64 {
	var n uint64
	for _, l := range s.logs {
		n += l.faults.Load()
	}
	return n
}

// Close flushes pending writes, checkpoints every phext with records in
// the commit log, leaves an empty log (the next Open replays nothing) and
// closes everything. Later calls return ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	ts := make([]*Tenant, 0, len(s.tenants))
	for _, t := range s.tenants {
		ts = append(ts, t)
	}
	s.tenants = map[string]*Tenant{}
	s.dirs = map[dirID]*Tenant{}
	s.mu.Unlock()
	s.lmu.Lock()
	s.shutting = true // before Wait: no eviction goroutine starts after it
	s.lmu.Unlock()
	close(s.stop)
	// Every phext of every tenant closes in one batch: one sync per step
	// for all their checkpoints (closeMany).
	var ps []*pfile
	for _, t := range ts {
		ps = append(ps, t.closeAll()...)
	}
	var errs []error
	if err := s.closeMany(ps); err != nil {
		errs = append(errs, err)
	}
	s.wg.Wait()
	if err := s.closeLogs(); err != nil {
		errs = append(errs, err)
	}
	if s.tmpLogDir {
		os.RemoveAll(s.logDir)
	}
	return errors.Join(errs...)
}

// TenantConfig describes one tenant.
type TenantConfig struct {
	// Name identifies the tenant in the Store.
	Name string
	// DataDir holds the tenant's phext files; created (0o750) if missing.
	DataDir string
	// QuotaBytes caps the tenant's stored scroll bytes; 0 = unlimited.
	QuotaBytes int64
	// Durability overrides the Store's mode; DurabilityDefault inherits.
	Durability Durability
}

// AddTenant registers a tenant, creating its DataDir (0o750) if missing.
// Adding a name again updates quota and durability in place and returns the
// same *Tenant; its DataDir must not change (remove the tenant first).
//
// It costs O(1) in the number of tenants and a stat or two: reading the
// data dir (file sizes for the quota) and probing it for case folding wait
// for the tenant's first request (see Tenant.prepare), so that a host with
// 10,000 tenants starts in milliseconds.
func (s *Store) AddTenant(cfg TenantConfig) (*Tenant, error) {
	dir, err := checkTenantConfig(cfg)
	if err != nil {
		return nil, err
	}
	return s.addTenant(cfg, dir, nil)
}

// AddTenants is AddTenant of each of cfgs in order, except that the data
// dirs are looked up (stat) in parallel first: at 10,000 tenants one stat
// each was a third of a start. It stops at the first failure: the tenants
// before it are added and returned, the failing one and those after it are
// not, and the error is what AddTenant of the failing one returns. Missing
// data dirs are created in order, as AddTenant does, so a failure leaves
// no dir created for a tenant after it.
func (s *Store) AddTenants(cfgs []TenantConfig) ([]*Tenant, error) {
	dirs := make([]string, 0, len(cfgs))
	var bad error // refuses cfgs[len(dirs)] once the ones before it are added
	for _, cfg := range cfgs {
		dir, err := checkTenantConfig(cfg)
		if err != nil {
			bad = err
			break
		}
		dirs = append(dirs, dir)
	}
	looks := lookupDirs(dirs)
	s.mu.Lock()
	if len(s.tenants) == 0 && !s.closed {
		// A start: size the maps once instead of growing them 10 times.
		s.tenants = make(map[string]*Tenant, len(dirs))
		s.dirs = make(map[dirID]*Tenant, len(dirs))
	}
	s.mu.Unlock()
	ts := make([]*Tenant, 0, len(dirs))
	for i, dir := range dirs {
		t, err := s.addTenant(cfgs[i], dir, &looks[i])
		if err != nil {
			return ts, err
		}
		ts = append(ts, t)
	}
	return ts, bad
}

// checkTenantConfig refuses a config AddTenant cannot take and returns its
// data dir made absolute.
func checkTenantConfig(cfg TenantConfig) (string, error) {
	if cfg.Name == "" {
		return "", errors.New("store: empty tenant name")
	}
	if cfg.DataDir == "" {
		return "", errors.New("store: empty data dir")
	}
	if cfg.Durability > DurabilityNo {
		return "", fmt.Errorf("store: bad durability %d", cfg.Durability)
	}
	if cfg.QuotaBytes < 0 {
		return "", errors.New("store: negative quota")
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return "", fmt.Errorf("store: data dir %s: %w", cfg.DataDir, err)
	}
	return dir, nil
}

// addTenant is AddTenant of cfg with its data dir dir (absolute). look is
// a lookup of dir made before the call, or nil to make it here.
func (s *Store) addTenant(cfg TenantConfig, dir string, look *dirLookup) (*Tenant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if t := s.tenants[cfg.Name]; t != nil {
		if t.removing {
			return nil, fmt.Errorf("store: tenant %s is being removed; try again", cfg.Name)
		}
		if t.dir != dir {
			return nil, fmt.Errorf("store: tenant %s: data dir cannot change from %s to %s", cfg.Name, t.dir, dir)
		}
		t.quota.Store(cfg.QuotaBytes)
		t.dur.Store(uint32(cfg.Durability))
		return t, nil
	}
	var l dirLookup
	if look != nil {
		l = *look
	} else {
		l = lookupDir(dir)
	}
	created := false
	if errors.Is(l.err, os.ErrNotExist) {
		if err := s.fs.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("store: tenant %s: %w", cfg.Name, err)
		}
		created = true
		l = lookupDir(dir)
	}
	if l.err != nil {
		return nil, fmt.Errorf("store: tenant %s: %w", cfg.Name, l.err)
	}
	if !l.isDir {
		return nil, fmt.Errorf("store: tenant %s: data dir %s is not a directory", cfg.Name, dir)
	}
	// Two tenants on one data dir would write the same snapshots through
	// two independent phexts and corrupt them.
	s.dirProbes++
	if o := s.dirs[l.id]; o != nil {
		return nil, fmt.Errorf("store: tenant %s: data dir %s is already used by tenant %s", cfg.Name, dir, o.name)
	}
	t := &Tenant{
		s:          s,
		name:       cfg.Name,
		dir:        dir,
		dirID:      l.id,
		createdDir: created,
	}
	t.quota.Store(cfg.QuotaBytes)
	t.dur.Store(uint32(cfg.Durability))
	s.tenants[cfg.Name] = t
	s.dirs[l.id] = t
	return t, nil
}

// RemoveTenant flushes and closes the tenant's phexts; later calls on its
// *Tenant return ErrClosed. Its files stay on disk.
func (s *Store) RemoveTenant(name string) error {
	s.mu.Lock()
	t := s.tenants[name]
	if t == nil || t.removing {
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return ErrClosed
		}
		return fmt.Errorf("store: no tenant %q", name)
	}
	// The tenant stays registered (and its data dir taken) until its
	// phexts are closed, so that a new tenant on the same dir cannot open
	// the same files meanwhile.
	t.removing = true
	s.mu.Unlock()
	err := t.shutdown()
	s.mu.Lock()
	if s.tenants[name] == t {
		delete(s.tenants, name)
		if s.dirs[t.dirID] == t {
			delete(s.dirs, t.dirID)
		}
	}
	s.mu.Unlock()
	return err
}

// Tenant returns the tenant called name, or nil.
func (s *Store) Tenant(name string) *Tenant {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t := s.tenants[name]; t != nil && !t.removing {
		return t
	}
	return nil
}

// register adds p to the LRU set. Past MaxOpenPhexts the least recently
// used phexts are closed, but only clean ones (no records in the commit log
// that their snapshot does not cover): closing those costs no I/O but the
// munmap. A dirty phext is checkpointed first, by the background evictor
// (evictLoop), which never makes a request wait: the checkpoint runs from
// a frozen view while the phext stays open, and a phext used meanwhile is
// not closed. So no opener and no writer ever waits for another phext's
// checkpoint.
//
// The bound: an opener past the cap plus one batch (a sixteenth of the
// cap) closes a clean victim itself, so the open set exceeds cap + batch
// only by dirty phexts waiting for their checkpoint (evictCkptParallel at
// a time). Those are phexts written since the last log rotation, whose
// records the log holds: see docs/OPERATIONS.md for what they cost. When
// checkpoints stall (a full disk) that excess is stopped by the hard
// ceiling (reserveOpen), which p's opener reserved a slot under: register
// turns the reservation into p's entry.
func (s *Store) register(p *pfile) {
	p.touch()
	s.lmu.Lock()
	s.opening--
	if p.state.Load() != stateReady || s.shutting {
		// Closed before it was registered (closeFile's unregister already
		// ran), or the store is closing: nothing to track or evict.
		s.wakeOpeners()
		s.lmu.Unlock()
		return
	}
	s.open[p] = struct{}{}
	over := len(s.open) - s.opts.MaxOpenPhexts
	if over <= 0 {
		s.lmu.Unlock()
		return
	}
	s.startEvictor()
	if over <= evictBatch(s.opts.MaxOpenPhexts) {
		s.lmu.Unlock()
		return
	}
	// The evictor is behind: close one clean phext here (a few tries;
	// dirty ones are left to the evictor).
	cands := s.pickClean(p)
	s.lmu.Unlock()
	s.closeOneClean(cands)
}

// startEvictor starts the background evictor unless it runs (lmu held).
func (s *Store) startEvictor() {
	if !s.evicting {
		s.evicting = true
		s.wg.Add(1)
		go s.evictLoop()
	}
}

// pickClean picks up to openerTries least recently used phexts other than
// p for closeOneClean and marks them victims (lmu held).
func (s *Store) pickClean(p *pfile) []*pfile {
	var cands []*pfile
	for len(cands) < openerTries {
		v := s.lruVictim(p)
		if v == nil {
			break
		}
		v.victim = true
		cands = append(cands, v)
	}
	return cands
}

// closeOneClean closes the first clean phext of cands (picked by
// pickClean), unmarks them all and reports whether it closed one.
func (s *Store) closeOneClean(cands []*pfile) bool {
	closed := false
	for _, v := range cands {
		if !closed && v.t.closeIfClean(v) {
			closed = true
		}
	}
	s.unmark(cands)
	return closed
}

// openerTries is how many least recently used phexts an opener past the
// cap plus one batch looks at for a clean one to close.
const openerTries = 4

// evictCkptParallel bounds the goroutines writing the evictor's snapshots.
const evictCkptParallel = 4

// evictBatch is the eviction batch for a cap of n: a sixteenth of it.
func evictBatch(n int) int { return max(1, n/16) }

// evictLoop is the background evictor: while more phexts are open than
// MaxOpenPhexts it takes the least recently used ones (at least a batch),
// closes the clean ones and checkpoints the dirty ones (evictCkptParallel
// at a time), closing each afterwards unless it was used meanwhile. It
// ends when the set is back at the cap or the store closes.
func (s *Store) evictLoop() {
	defer s.wg.Done()
	for {
		s.lmu.Lock()
		over := len(s.open) - s.opts.MaxOpenPhexts
		if over <= 0 || s.shutting {
			s.evicting = false
			s.spare = nil
			s.lmu.Unlock()
			return
		}
		victims := s.lruBatch(nil, over)
		uses := make([]uint64, len(victims))
		for i, v := range victims {
			v.victim = true
			uses[i] = v.lastUse.Load()
		}
		s.lmu.Unlock()
		if len(victims) == 0 {
			// Every open phext is picked by an opener or opening: let them.
			if !s.evictPause() {
				return
			}
			continue
		}
		progress := s.evictRound(victims, uses)
		s.unmark(victims)
		if !progress && !s.evictPause() {
			// Nothing could be closed (every checkpoint failed, or every
			// victim was used meanwhile): wait before trying again.
			return
		}
	}
}

// evictPause waits a little before the evictor's next round; false when
// the store is closing (the evictor has ended: evicting is cleared).
func (s *Store) evictPause() bool {
	t := time.NewTimer(evictRetry)
	defer t.Stop()
	select {
	case <-s.stop:
		s.lmu.Lock()
		s.evicting = false
		s.spare = nil
		s.lmu.Unlock()
		return false
	case <-t.C:
		return true
	}
}

// evictRetry is how long the evictor waits after a round that closed
// nothing, and the first wait before it checkpoints again a phext whose
// checkpoint failed; that wait doubles with each failure up to
// evictRetryMax (each try writes the whole phext: a disk that stays full
// must not see one every round).
const (
	evictRetry    = 50 * time.Millisecond
	evictRetryMax = 5 * time.Second
)

// evictRound closes the clean victims and checkpoints the dirty ones in
// batches (checkpointBatch: one syncfs per step, one log fsync a batch),
// then closes those of them that are clean and unused since they were
// picked (uses[i] is victims[i]'s lastUse then). It reports whether it
// closed any.
func (s *Store) evictRound(victims []*pfile, uses []uint64) bool {
	closed := 0
	var dirty []*pfile
	var dirtyUses []uint64
	now := monoNow()
	for i, v := range victims {
		if v.t.closeIfClean(v) {
			closed++
		} else if v.state.Load() == stateReady && now >= v.evictAfter.Load() {
			dirty = append(dirty, v)
			dirtyUses = append(dirtyUses, uses[i])
		}
	}
	for len(dirty) > 0 {
		n := min(len(dirty), evictCkptBatch)
		if s.openWaiting.Load() > 0 {
			n = min(n, evictCkptUrgent)
		}
		did, errs := s.checkpointBatch(dirty[:n], batchOpen)
		s.countBatch(did, errs)
		for i, v := range dirty[:n] {
			if err := errs[v]; err != nil {
				if err != errPfileClosed && err != errCkptBusy && err != errCkptCut {
					b := min(max(2*v.evictFail.Load(), int64(evictRetry)), int64(evictRetryMax))
					v.evictFail.Store(b)
					v.evictAfter.Store(monoNow() + b)
					s.log.Warn("store: checkpoint before closing a least recently used phext", "path", v.path, "err", err)
				}
				continue
			}
			v.evictFail.Store(0)
			v.evictAfter.Store(0)
			// Used since it was picked: keep it open.
			if v.lastUse.Load() == dirtyUses[i] && v.t.closeIfClean(v) {
				closed++
			}
		}
		dirty, dirtyUses = dirty[n:], dirtyUses[n:]
		if s.isShutting() {
			break
		}
	}
	return closed > 0
}

// evictCkptBatch is the most phexts the evictor checkpoints in one batch;
// evictCkptUrgent the most while openers wait at the ceiling (see
// reserveOpen), including a batch under way when they began to wait.
const (
	evictCkptBatch  = 256
	evictCkptUrgent = 16
)

// isShutting reports whether Close started.
func (s *Store) isShutting() bool {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return s.shutting
}

// unmark clears the victim marks of ps.
func (s *Store) unmark(ps []*pfile) {
	if len(ps) == 0 {
		return
	}
	s.lmu.Lock()
	for _, v := range ps {
		v.victim = false // one that could not be closed may be picked again
	}
	s.lmu.Unlock()
}

// spareVictim is an entry of Store.spare.
type spareVictim struct {
	p   *pfile
	use uint64 // p.lastUse when it was sorted
}

// lruBatch returns the least recently used open phexts other than p, at
// least over of them and at least a sixteenth of the cap, oldest first,
// and keeps the rest of the sorted set in s.spare (lmu held).
func (s *Store) lruBatch(p *pfile, over int) []*pfile {
	cands := s.lruSorted(p)
	k := min(max(over, evictBatch(s.opts.MaxOpenPhexts)), len(cands))
	victims := make([]*pfile, k)
	for i := range victims {
		victims[i] = cands[i].p
	}
	s.spare = cands[k:]
	return victims
}

// lruSorted returns the open phexts other than p that no batch has
// picked, least recently used first (lmu held).
func (s *Store) lruSorted(p *pfile) []spareVictim {
	s.lruScans++
	cands := make([]spareVictim, 0, len(s.open))
	for q := range s.open {
		if q != p && !q.victim && q.state.Load() == stateReady {
			cands = append(cands, spareVictim{p: q, use: q.lastUse.Load()})
		}
	}
	slices.SortFunc(cands, func(a, b spareVictim) int { return cmp.Compare(a.use, b.use) })
	return cands
}

// lruVictim returns the least recently used open phext other than p that
// no batch has picked, or nil (lmu held). It takes the first of s.spare
// still open, unpicked and unused since it was sorted, which is older
// than every phext used or opened since; when none is left it sorts the
// open set again into s.spare. (A scan of the open set per open past the
// cap was a fifth of the server's CPU at 10,000 tenants writing with a cap
// of 5,000; one sort now serves up to the whole set's openers.)
func (s *Store) lruVictim(p *pfile) *pfile {
	for sorted := false; ; sorted = true {
		for len(s.spare) > 0 {
			c := s.spare[0]
			s.spare[0] = spareVictim{}
			s.spare = s.spare[1:]
			if c.p != p && !c.p.victim && c.p.state.Load() == stateReady && c.p.lastUse.Load() == c.use {
				if _, open := s.open[c.p]; open {
					return c.p
				}
			}
		}
		if sorted {
			return nil
		}
		s.spare = s.lruSorted(p)
	}
}

func (s *Store) unregister(p *pfile) {
	s.lmu.Lock()
	if _, ok := s.open[p]; ok {
		delete(s.open, p)
		s.wakeOpeners()
	}
	s.lmu.Unlock()
}

// syncer is the store-wide everysec goroutine: once per SyncInterval it
// fsyncs each log written since its last fsync: at most one fsync a
// second per log (the worker's and each event loop's) for all tenants,
// however many there are. After a failed log write or fsync it retries
// the repair (rotate) every round until it succeeds, and still fsyncs.
func (s *Store) syncer() {
	defer s.wg.Done()
	tk := time.NewTicker(s.opts.SyncInterval)
	defer tk.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tk.C:
		}
		s.syncRounds.Add(1)
		if s.suspect.Load() != nil {
			// Writes are refused until the repair succeeded, but the
			// records acknowledged before the failure (in every log, not
			// only the one that failed) are still fsynced each round: a
			// repair that keeps failing (its disk full) must not leave
			// them in the page cache past SyncInterval. A later fsync is
			// never trusted to undo the failure (only the repair does).
			s.kickRotate()
		}
		for _, l := range s.logs {
			if err := l.sync(); err != nil {
				s.log.Error("store: everysec fsync of the commit log failed", "err", err)
			}
		}
	}
}

// isPhextFile reports whether a directory entry is a snapshot and returns
// its phext name ("" for the default .phext).
func isPhextFile(fn string) (string, bool) {
	if !strings.HasSuffix(fn, snapExt) {
		return "", false
	}
	name := fn[:len(fn)-len(snapExt)]
	if !phext.ValidName([]byte(name)) {
		return "", false
	}
	return name, true
}

// estimateSizes returns the tenant's per-phext byte counts from file sizes
// (the snapshot, an upper bound of the scroll bytes; the commit log's
// records of a phext were folded into it at Open or its last close) and their total,
// without opening any phext. Names are as listed (prepare folds them).
func (t *Tenant) estimateSizes() (map[string]int64, int64, error) {
	ents, err := os.ReadDir(t.dir)
	if err != nil {
		return nil, 0, fmt.Errorf("store: tenant %s: %w", t.name, err)
	}
	sizes := make(map[string]int64)
	var total int64
	for _, e := range ents {
		name, ok := isPhextFile(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		var n int64
		if fi, err := e.Info(); err == nil {
			n = fi.Size()
		}
		if fi, err := os.Stat(filepath.Join(t.dir, e.Name()+walExt)); err == nil {
			n += fi.Size() // a WAL of an earlier version, not replayed yet
		}
		sizes[name] += n
		total += n
	}
	return sizes, total, nil
}

// caseInsensitive probes whether dir folds case (a case-insensitive mount),
// by creating a mixed-case file and opening it by its lower-case name. On
// any error it assumes a case-sensitive directory.
func (s *Store) caseInsensitive(dir string) bool {
	upper := filepath.Join(dir, ".sq-case-PROBE")
	f, err := s.fs.OpenFile(upper, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|noFollow, 0o640)
	if err != nil {
		s.log.Warn("store: cannot probe data dir for case folding", "dir", dir, "err", err)
		return false
	}
	f.Close()
	defer s.fs.Remove(upper)
	g, err := s.fs.OpenFile(filepath.Join(dir, ".sq-case-probe"), os.O_RDONLY|noFollow, 0)
	if err != nil {
		return false
	}
	g.Close()
	return true
}
