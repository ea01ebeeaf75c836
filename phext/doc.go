// Package phext reads and writes phext documents: plain text in which nine
// delimiter bytes (breaks) address up to 999⁹ scrolls by a nine-part
// Coordinate (library.shelf.series/collection.volume.book/chapter.section.scroll).
//
// It works on []byte without I/O and matches the reference implementations
// (Rust libphext 0.3.0 and SQ 0.5.6) byte for byte wherever they are sane;
// docs/PHEXT.md lists every place where it is not and what we do instead.
// The golden vectors in testdata/ are the specification.
//
// Entry points: Scanner walks a buffer once (zero allocations) and yields
// each non-empty scroll with its coordinate and byte range; Explode, Select,
// Implode/AppendImplode, Normalize build on it; TextMap, AppendTOC, Manifest,
// Index, Checksum are libphext's views; Delta and Where are SQ's server
// operations; ParseCoordinate, ToCoordinateLoose and ValidScroll check
// client input.
//
// # Caveats
//
//   - Scrolls returned by Scanner, Explode, ExplodeRef and Select are views
//     into the caller's buffer, not copies: they are only valid while that
//     buffer is, and change if it changes. Copy what must outlive it.
//   - A break that would take a coordinate part past 999 is an error
//     (*OverflowError, ErrOverflow) naming its byte offset. The reference
//     saturates at 999 and silently merges or reorders scrolls; such a
//     document is refused here, by every function that reads a buffer,
//     except Where, which only hashes its input and follows the reference.
//   - The functions read bytes, not text: invalid UTF-8 passes through
//     Scanner and Explode unchanged. Use ValidScroll before storing a
//     scroll, and LossyUTF8 where SQ converts input lossily.
//   - AppendImplode and Delta expect scrolls sorted by coordinate without
//     duplicates (Explode's order); they do not sort or check.
//   - Implode of coordinates outside 1..999 writes what SQ writes, which
//     does not read back at the same coordinates; validate first.
//   - A TOC summary that would split a UTF-8 character at byte 32 is cut
//     back to the last whole character (the reference panics).
package phext
