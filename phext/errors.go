package phext

import (
	"errors"
	"fmt"
)

// ErrOverflow is returned (inside an *OverflowError) when a break would take
// a part of the coordinate past MaxPart. The reference library saturates at
// 999 and silently merges or reorders scrolls; we refuse the document.
var ErrOverflow = errors.New("phext: coordinate part past 999")

// ErrBadCoordinate is returned, wrapped with the reason, when coordinate text
// is not one of the accepted forms or a part is outside 1..MaxPart.
var ErrBadCoordinate = errors.New("phext: bad coordinate")

// ErrBadAlgo is returned by Where for an algorithm other than "xor" or
// "checksum".
var ErrBadAlgo = errors.New("phext: unknown where algorithm")

// ErrBadLimit is returned by Where for a negative limit.
var ErrBadLimit = errors.New("phext: negative where limit")

// OverflowError reports the break that would take a coordinate part past
// MaxPart. errors.Is(err, ErrOverflow) holds for it.
type OverflowError struct {
	// Offset is the byte offset of the offending break in the buffer.
	Offset int
	// Level is the level (LevelLibrary..LevelScroll) of that break.
	Level int
}

var levelNames = [9]string{"library", "shelf", "series", "collection", "volume",
	"book", "chapter", "section", "scroll"}

// Error describes the break and its offset.
func (e *OverflowError) Error() string {
	name := "unknown"
	if e.Level >= 0 && e.Level < len(levelNames) {
		name = levelNames[e.Level]
	}
	return fmt.Sprintf("phext: %s break at byte offset %d takes the %s part past %d",
		name, e.Offset, name, MaxPart)
}

// Unwrap returns ErrOverflow.
func (e *OverflowError) Unwrap() error { return ErrOverflow }

// coordForm ends every coordinate error: what a good one looks like.
const coordForm = " (want nine parts 1..999 in the form 1.1.1/1.1.1/1.1.1)"

// badCoord wraps ErrBadCoordinate with a reason and the expected form; only
// called on error paths.
func badCoord(format string, args ...any) error {
	return fmt.Errorf("%w: "+format+coordForm, append([]any{ErrBadCoordinate}, args...)...)
}

// ErrTooLarge is returned by DeltaLimit when its output would pass the
// limit.
var ErrTooLarge = errors.New("phext: output too large")

// ErrBadScroll is returned (inside a *ScrollError) by CheckScroll for text
// that is not valid UTF-8 or holds a delimiter byte.
var ErrBadScroll = errors.New("phext: bad scroll text")

// ScrollError reports the first byte that makes scroll text invalid.
// errors.Is(err, ErrBadScroll) holds for it.
type ScrollError struct {
	// Offset is the byte offset of the offending byte in the text.
	Offset int
	// Byte is that byte.
	Byte byte
	// Delimiter is true when Byte is a phext delimiter; false when the
	// text is not valid UTF-8 there.
	Delimiter bool
}

// Error names the byte, its offset and what scroll text must be.
func (e *ScrollError) Error() string {
	if e.Delimiter {
		return fmt.Sprintf("byte 0x%02X (%s break) at offset %d is a phext delimiter; scroll text must be valid UTF-8 without the delimiter bytes 0x01, 0x17-0x1A, 0x1C-0x1F",
			e.Byte, levelNames[LevelOf(e.Byte)], e.Offset)
	}
	return fmt.Sprintf("byte 0x%02X at offset %d is not valid UTF-8; scroll text must be valid UTF-8 without the delimiter bytes 0x01, 0x17-0x1A, 0x1C-0x1F",
		e.Byte, e.Offset)
}

// Unwrap returns ErrBadScroll.
func (e *ScrollError) Unwrap() error { return ErrBadScroll }
