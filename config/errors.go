package config

import (
	"errors"
	"fmt"
)

// ErrInvalid is returned when a tenant configuration cannot be read or is
// invalid (an empty token, a duplicate name or data dir, an unknown
// durability); the wrapped message names the entry. A server reload that
// fails with it leaves the running configuration in place.
var ErrInvalid = errors.New("invalid tenant config")

// ErrWorldReadable is returned by LoadServing for a config file that every
// user of the machine may read: it holds the tenants' API tokens. It wraps
// ErrInvalid, so a reload refused with it keeps the old config.
var ErrWorldReadable = fmt.Errorf("%w: world-readable config file", ErrInvalid)
