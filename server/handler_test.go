package server

import (
	"reflect"
	"testing"

	"github.com/panjf2000/gnet/v2"
)

// loopHandler is what gnet runs.
var _ gnet.EventHandler = (*loopHandler)(nil)

// TestEngineCallbacksNotExported: the gnet callbacks are not methods of the
// public Server, so no caller outside the package can run OnTraffic (or any
// other) on a goroutine gnet does not expect.
func TestEngineCallbacksNotExported(t *testing.T) {
	typ := reflect.TypeOf((*Server)(nil))
	for _, name := range []string{"OnBoot", "OnShutdown", "OnOpen", "OnClose", "OnTraffic", "OnTick"} {
		if _, ok := typ.MethodByName(name); ok {
			t.Errorf("*Server has the gnet callback %s: it belongs to the unexported loopHandler", name)
		}
	}
}
