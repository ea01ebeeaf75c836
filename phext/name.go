package phext

// MaxNameLen is the longest phext name, in bytes.
const MaxNameLen = 64

// The phext name rule lives here, the lowest package, because both the
// wire codec (protocol, at decode) and the storage engine (store, before a
// name becomes a file name) enforce it and neither imports the other.

// nameClass marks the bytes allowed in a phext name: 1 = anywhere, 2 = not
// first ('.').
var nameClass = func() (t [256]uint8) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = 1
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = 1
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = 1
	}
	t['_'], t['-'], t['.'] = 1, 1, 2
	return t
}()

// ValidName reports whether name is a valid phext name: empty (the
// tenant's default phext) or [A-Za-z0-9_-][A-Za-z0-9._-]* of at most
// MaxNameLen bytes. A valid name has no '/' and cannot start with '.', so
// the store's file name made from it never leaves the data directory.
func ValidName(name []byte) bool {
	if len(name) > MaxNameLen {
		return false
	}
	for i, b := range name {
		c := nameClass[b]
		if c == 0 || (i == 0 && c == 2) {
			return false
		}
	}
	return true
}
