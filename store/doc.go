// Package store is SQ's storage engine: per-tenant directories of phext
// snapshots (mmapped) plus commit logs shared by all tenants: the worker
// log and one per event loop (Options.LoopLogs).
//
// A Store owns tenants; a Tenant owns phexts named by [A-Za-z0-9_-][A-Za-z0-9._-]*
// (the empty name is the default phext, the file ".phext"). Phext
// <name> lives in <data_dir>/<name>.phext, always a complete phext document
// that other phext tools can read; the changes since each snapshot live in
// the commit log in Options.LogDir (log.go, recover.go), with a store-wide
// LSN per record. docs/STORAGE.md describes the bytes.
//
// Store.Open replays the log into the snapshots (recovery) and starts a new
// log generation. Opening a phext then only maps its snapshot read-only and
// indexes it with phext.Scanner (coordinate → byte range); changes go to
// an in-memory overlay of changed scrolls. A SELECT of an unchanged scroll
// copies straight out of the mapping. Writes are validated (name,
// coordinate, scroll text, quota), queued on the phext's pending batch,
// handed to the log's group commit (the writes of every tenant queued
// meanwhile go out with one write(), and in always mode one fsync), and
// only then applied to the overlay. A checkpoint writes a frozen view of a
// phext to a new snapshot and logs a checkpoint record; rotations start a
// new log generation and delete the old ones once every phext with records
// in them was checkpointed.
//
// Phexts are opened on first use and the least recently used ones are
// closed past Options.MaxOpenPhexts; only clean ones are closed (no records
// in the log their snapshot does not cover, so a closed phext's data dir is
// self-contained and closing costs no I/O). Dirty ones past the cap are
// checkpointed by the background evictor first, never on a request's path
// (Store.register states the bound on the excess), up to a hard ceiling
// past which an opener of a phext not open yet waits (Options.OpenWait)
// and then gets ErrBusy (store/openlimit.go); an open phext holds one
// mapping and no descriptor.
//
// # Caveats
//
//   - Every method blocks on disk I/O (open, log append, fsync,
//     checkpoint): call them from worker goroutines, never from an event
//     loop. The exceptions are LoopWrites (atomic loads: may TryApply take
//     this tenant's writes at all), TryAppendSelect and TryApply (with
//     LoopRound.Flush), which only try locks and decline (ok=false,
//     nothing changed) instead of waiting: TryApply applies a write in
//     memory and appends its record to the loop round's buffer, and Flush
//     writes the round's records with one write() (never an fsync, a file
//     creation or a checkpoint). A round owns its loop's log's write side
//     (LoopRound.SetLoop; the worker log without loop logs) from its first
//     write to its Flush; the caller sends no reply of the round before
//     Flush returned (the records are then in the kernel). A phext whose
//     latest record waits in one loop's round is declined by the others
//     until that round ended, and a worker's write of it waits for that.
//   - Each log is fsynced on its own: after a power loss recovery applies
//     a phext's records only up to the first whose predecessor (each data
//     record names the previous LSN of its phext) is missing (chainCut).
//   - A write applied by TryApply is visible to readers (and change-feed
//     watchers) before its round's Flush, as Redis serves a write from
//     memory before its AOF write(): a reader may see a write that a crash
//     of the process then loses (its writer was never answered). If the
//     Flush fails, the round's writes stay applied in memory but are
//     answered with the error; the log file takes nothing more and the
//     logs are suspect until the repair checkpointed them from memory.
//   - The Append* methods copy into dst under the phext's read lock; no
//     slice returned by this package points into a mapping.
//   - A snapshot that is not valid UTF-8 is refused with ErrCorrupt naming
//     the file and offset (the reference SQ would load it as empty and
//     overwrite it on the next write). A snapshot whose coordinates pass
//     999 is refused with ErrOverflow naming the offset. Other phexts of the
//     tenant keep working.
//   - Usage.Bytes counts scroll text bytes. For phexts not opened since
//     AddTenant it counts their snapshot sizes (an upper bound)
//     until they are first opened; quotas are checked against that.
//   - The quota check of an Update compares against the scroll's applied
//     length; with other writes to the same phext pending it may refuse a
//     write that would have fit, never admit one that does not.
//   - After a failed log write the log is cut back and nothing of the group
//     is applied. After a failed fsync (or cut-back) the page cache is not
//     trusted: writes of every tenant are refused until a repair (a new log
//     generation, and every phext with records in the old ones checkpointed
//     from memory) succeeded; the syncer and every writer retry it.
//   - The logs are shared: a log fault (ENOSPC, EIO) fails the writes of
//     every tenant, as one AOF does in Redis; reads go on. A damaged
//     record that names its phext makes only that phext refuse to open;
//     damage that names none (a bad length or head) makes Open refuse.
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
//	Store.rotMu → pfile.cmu → pfile.fmu → pfile.mu → pfile.qmu
//	pfile.fmu → commitLog.mu (also waiting on commitLog.cond for a loop
//	log's round: awaitLoopRound, never on an event loop)
//	write sides (rotation, Close): the worker log's → each loop log's, in
//	order
//	(an event loop's LoopRound: its log's write side → pfile.fmu → pfile.mu
//	→ pfile.qmu, Store.dmu → commitLog.mu; every one only tried)
//	commitLog.readBack → pfile.cmu → pfile.fmu → pfile.mu (Tenant.ReadChanges)
//
// Store.lmu, Store.dmu, Store.umu, commitLog.mu and commitLog.syncMu are
// leaves (commitLog.mu is taken under fmu only to queue records, never
// across I/O; commitLog.syncMu is held across an fsync of the log's file,
// shared or, for a checkpoint record's, exclusively, with or without the
// write side, never by an event loop). Tenant.mu is
// never held while a pfile lock is taken (except pfile.mu read-locked in
// Usage).
//
//   - Store.mu guards the tenant map and the closed flag.
//   - Store.lmu guards the set of open phexts (LRU); held only to add,
//     remove or pick victims, never across I/O.
//   - Store.dmu guards the set of phexts with records in the log their
//     snapshot does not cover, and the pinned generation; Store.umu the
//     phexts that refuse to open until the next Open.
//   - Store.rotMu serializes rotations (and repairs); a rotation holds it
//     across its file creation and the checkpoints it runs.
//   - Tenant.mu guards the tenant's phext map and per-phext byte counts;
//     held only for map operations, never across I/O.
//   - commitLog.mu guards the queued group, the dir table and the file
//     pointer; the "writing" flag it guards gives one goroutine at a time
//     (the group commit's leader, an event loop's LoopRound, a rotation)
//     the file, and that goroutine writes and fsyncs without the mutex
//     (a checkpoint's record is fsynced after its group is written and the
//     file given back, like the syncer's fsync: syncWritten). A
//     loop round takes it (only when nothing is queued) at its first write
//     and gives it back at Flush, so groups queued meanwhile go to the
//     file after the round's records; it never writes those groups itself
//     (a new goroutine leads them).
//   - pfile.cmu serializes checkpoints and close; held across a
//     checkpoint's serialization and fsyncs, which writers never wait for.
//     A batch (checkpointBatch) holds the cmu of each of its phexts: a
//     close's batch takes them (they are its own, closing, phexts), the
//     evictor's only tries them and skips a busy one, so two batches never
//     wait for each other.
//   - commitLog.readBack (a token, not a mutex) lets one
//     Tenant.ReadChanges read the log files at a time (others wait their
//     turn, at most readBackWait, holding no lock, then ErrNotInLog); it reads them holding no
//     other lock, then holds the phext's cmu (waiting for a running
//     checkpoint: the snapshot identity settled), fmu and mu (shared) for
//     memory work only, to compare what it read with the state.
//   - pfile.fmu serializes one phext's log commits and applies (so its
//     records reach the log in LSN order) and guards its log bookkeeping.
//     It is held across the group commit's write() (and fsync in mode
//     always), but no tenant lock is.
//   - pfile.mu (RWMutex) guards the document state: mapping, index,
//     overlay. Readers hold it shared while they copy; apply, remap and
//     munmap hold it exclusive for memory-only work.
//   - pfile.qmu guards the pending batch and is held only to append an
//     encoded record; a writer takes it with pfile.mu read-locked so its
//     quota check sees a consistent applied state.
//
// Goroutines:
//
//   - Caller goroutines run reads, and writers run group commit: per phext,
//     the writer that finds no flusher flushes batches until its own is
//     done, then hands further batches to a new flusher goroutine; in the
//     log, the flusher that finds no leader writes every queued group (all
//     tenants) until its own is written, then hands the rest on likewise.
//   - One syncer goroutine per Store fsyncs each log once per SyncInterval
//     when it was written since (one fsync a second per log for all
//     tenants), and retries the repair after a failed fsync.
//   - A checkpoint writes a frozen view of the phext without blocking its
//     writers or readers: they wait only for the freeze and the pointer
//     swap (memory only).
//   - At most one background checkpoint goroutine per phext, started when
//     its records pass the threshold, at most one rotation goroutine per
//     Store, and at most one evictor per Store (checkpointing batches of
//     up to evictCkptBatch dirty phexts, evictCkptParallel goroutines
//     writing them), running while more phexts are open than the cap;
//     Store.Close waits for them.
package store
