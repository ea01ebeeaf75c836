package server

import "errors"

// ErrConfig is returned when a tenant configuration cannot be read or is
// invalid (an empty token, a duplicate name or data dir, an unknown
// durability); the wrapped message names the entry. A reload that fails
// with it leaves the running configuration in place.
var ErrConfig = errors.New("invalid tenant config")
