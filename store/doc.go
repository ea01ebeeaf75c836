// Package store is SQ's storage engine: per-tenant directories of phext
// files, each an mmapped snapshot plus an append-only write-ahead log.
//
// A Store owns tenants; a Tenant owns phexts named by [A-Za-z0-9_-][A-Za-z0-9._-]*
// (the empty name is the default phext, the file ".phext"). Phext
// <name> lives in <data_dir>/<name>.phext, always a complete phext document
// that other phext tools can read, and changes since that snapshot live in
// <data_dir>/<name>.phext.wal. docs/STORAGE.md describes the bytes.
//
// Opening a phext maps its snapshot read-only, indexes it with
// phext.Scanner (coordinate → byte range) and replays the WAL into an
// in-memory overlay of changed scrolls. A SELECT of an unchanged scroll
// copies straight out of the mapping. Writes are validated (name,
// coordinate, scroll text, quota), queued on the phext's pending batch,
// written to the WAL with one write() per batch (and one fsync in always
// mode: group commit), and only then applied to the overlay. When the WAL
// outgrows Options.CompactMinWAL and half the snapshot, the merged document
// is written to a temp file, fsynced and renamed over the snapshot.
//
// Phexts are opened on first use and the least recently used ones are
// closed past Options.MaxOpenPhexts; an open phext holds one descriptor
// (its WAL, once written) and one mapping.
//
// # Caveats
//
//   - Every method blocks on disk I/O (open, WAL append, fsync, compaction):
//     call them from worker goroutines, never from an event loop. The
//     exceptions are TryAppendSelect and TryWrite, which only try locks and
//     decline (ok=false, nothing changed) instead of waiting; TryWrite makes
//     one write() to the WAL and never fsyncs, creates files or compacts.
//   - The Append* methods copy into dst under the phext's read lock; no
//     slice returned by this package points into a mapping.
//   - A snapshot that is not valid UTF-8 is refused with ErrCorrupt naming
//     the file and offset (the reference SQ would load it as empty and
//     overwrite it on the next write). A snapshot whose coordinates pass
//     999 is refused with ErrOverflow naming the offset. Other phexts of the
//     tenant keep working.
//   - Usage.Bytes counts scroll text bytes. For phexts not opened since
//     AddTenant it counts their file sizes (snapshot + WAL, an upper bound)
//     until they are first opened; quotas are checked against that.
//   - The quota check of an Update compares against the scroll's applied
//     length; with other writes to the same phext pending it may refuse a
//     write that would have fit, never admit one that does not.
//   - After a failed WAL write the WAL is cut back; if cutting back failed
//     too the phext is reopened (its WAL replayed) on next use, and records
//     whose writers saw an error may reappear. After a failed fsync the
//     page cache is not trusted: the state in memory is rewritten to new
//     files (snapshot and WAL) before the next write, and writes are
//     refused until that succeeds.
//   - Snapshots must be below 4 GiB (Options.MaxSnapshot); a write that
//     could take a phext past it is refused with ErrTooLarge before it is
//     logged (the check keeps an upper bound of the serialized size and
//     measures exactly only near the limit). One write's payload is at
//     most MaxRecord.
//   - GET, TOC and DELTA replies are measured before they are built
//     (AppendGetLimit, AppendTOCLimit, AppendDeltaLimit: Limit.Max and
//     Limit.Reserve); a DELTA request is parsed before the phext is locked
//     and its reply built after the lock is released.
//   - Snapshots are mapped: replace them only by rename (as compaction
//     does). Truncating a snapshot in place while the store has it open
//     makes reads of the lost pages fault (SIGBUS).
//   - The first Insert into an unchanged scroll copies that scroll into the
//     overlay (cost of the scroll, not of the phext); those copies count
//     towards the compaction threshold.
//
// # Locks
//
// Lock order (acquire left before right; never the reverse):
//
//	Store.mu → Tenant.mu
//	pfile.cmu → pfile.fmu → pfile.mu → pfile.qmu
//
// Store.lmu is a leaf. Tenant.mu is never held while a pfile lock is taken
// (except pfile.mu read-locked in Usage).
//
//   - Store.mu guards the tenant map and the closed flag.
//   - Store.lmu guards the set of open phexts (LRU); held only to add,
//     remove or pick victims, never across I/O.
//   - Tenant.mu guards the tenant's phext map and per-phext byte counts;
//     held only for map operations, never across I/O.
//   - pfile.cmu serializes checkpoints and close; held across a
//     checkpoint's serialization and fsyncs, which writers never wait for.
//   - pfile.fmu serializes WAL writes, always-mode fsyncs, applies and
//     compaction of one phext. It is held across write() and fsync, but no
//     tenant lock is. The everysec syncer takes it only to pick the file and
//     fsyncs without it, so writers are not stalled by the background fsync.
//   - pfile.mu (RWMutex) guards the document state: mapping, index,
//     overlay. Readers hold it shared while they copy; apply, remap and
//     munmap hold it exclusive for memory-only work.
//   - pfile.qmu guards the pending batch and is held only to append an
//     encoded record; a writer takes it with pfile.mu read-locked so its
//     quota check sees a consistent applied state.
//
// Goroutines:
//
//   - Caller goroutines run reads, and writers run group commit: the writer
//     that finds no flusher writes batches until its own is done, then hands
//     further batches to a new flusher goroutine.
//   - One syncer goroutine per Store makes dirty WALs of everysec tenants
//     durable: one syncfs(2) per file system and round when several WALs
//     share it (FSSyncer), else one fsync per WAL.
//   - A checkpoint (compaction) writes a frozen view of the phext without
//     blocking its writers or readers: they wait only for the switch (two
//     renames and a directory fsync under fmu). Close compacts in place.
//   - At most one background compaction goroutine per phext, started when
//     its WAL passes the threshold; Store.Close waits for them.
package store
