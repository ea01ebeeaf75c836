package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/phext/sq/client"
	"github.com/phext/sq/config"
	"github.com/phext/sq/phext"
	"github.com/phext/sq/protocol"
	"github.com/phext/sq/server"
	"github.com/phext/sq/store"
)

// The examples run against a real server started by TestMain on
// 127.0.0.1 with a random port and one tenant.
var (
	addr  string
	token string
)

func TestMain(m *testing.M) {
	os.Exit(runWithServer(m))
}

func runWithServer(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sq-client-example-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	token, err = config.GenerateToken(1)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := &config.Config{Tenants: map[string]config.TenantEntry{
		token: {Name: "tenant-001", DataDir: filepath.Join(dir, "tenant-001")},
	}}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(&store.Options{Durability: store.DurabilityNo, Logger: quiet})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer st.Close()
	srv, err := server.Start(st, cfg, &server.Options{Listen: "127.0.0.1:0", EventLoops: 2, Logger: quiet})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	addr = srv.Addr()
	code := m.Run()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "shutdown:", err)
	}
	return code
}

// Dial, write a scroll, read it back.
func Example() {
	ctx := context.Background()
	c, err := client.Dial(ctx, addr, token)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	at, _ := phext.ParseCoordinate("1.1.1/1.1.1/1.1.2")
	n, err := c.Update(ctx, "example", at, []byte("hello"))
	fmt.Println("updated", n, err)
	n, err = c.Insert(ctx, "example", at, []byte(", phext"))
	fmt.Println("inserted", n, err)
	text, err := c.Select(ctx, "example", at)
	fmt.Printf("%s %v\n", text, err)
	toc, _ := c.TOC(ctx, "example")
	fmt.Print(string(toc))
	// Output:
	// updated 5 <nil>
	// inserted 7 <nil>
	// hello, phext <nil>
	// * 1.1.1/1.1.1/1.1.2: hello, phext
}

// Errors from the server carry their status code; network errors do not.
func ExampleStatusOf() {
	ctx := context.Background()
	c, err := client.Dial(ctx, addr, token)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	_, err = c.Insert(ctx, "example", phext.Origin, []byte("a\x17b")) // a scroll break inside a scroll
	fmt.Println(client.StatusOf(err) == protocol.StatusBadScroll)
	var se *client.StatusError
	if errors.As(err, &se) {
		fmt.Println(se.Op, se.Status)
	}

	_, err = client.Dial(ctx, addr, "pmb-v1-999-000000000000000000000000")
	fmt.Println(client.StatusOf(err))

	c.Close()
	err = c.Ping(ctx)
	fmt.Println(errors.Is(err, client.ErrClosed), client.StatusOf(err) == client.StatusNone)
	// Output:
	// true
	// INSERT BAD_SCROLL
	// AUTH
	// true true
}

// A Pool spreads calls from many goroutines over a few connections.
func ExamplePool() {
	ctx := context.Background()
	p, err := client.NewPool(ctx, addr, token, 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	done := make(chan error)
	for i := 1; i <= 4; i++ {
		go func(i int) {
			at := phext.Origin
			at[phext.LevelScroll] = uint16(i)
			_, err := p.Update(ctx, "pool", at, []byte(fmt.Sprint("scroll ", i)))
			done <- err
		}(i)
	}
	for i := 0; i < 4; i++ {
		if err := <-done; err != nil {
			fmt.Println(err)
		}
	}
	toc, _ := p.TOC(ctx, "pool")
	fmt.Print(string(toc))
	// Output:
	// * 1.1.1/1.1.1/1.1.1: scroll 1
	// * 1.1.1/1.1.1/1.1.2: scroll 2
	// * 1.1.1/1.1.1/1.1.3: scroll 3
	// * 1.1.1/1.1.1/1.1.4: scroll 4
}

// Conn.Do is the allocation-free form: the body is appended to a reused
// buffer and an error status is returned as a value.
func ExampleConn_Do() {
	ctx := context.Background()
	c, err := client.Dial(ctx, addr, token)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	name := []byte("do")
	buf := make([]byte, 0, 1024)
	st, buf, err := c.Do(ctx, protocol.OpUpdate, name, phext.Origin, []byte("raw"), buf[:0])
	fmt.Println(st, len(buf), err)
	st, buf, err = c.Do(ctx, protocol.OpSelect, name, phext.Origin, nil, buf[:0])
	fmt.Println(st, string(buf), err)
	st, _, err = c.Do(ctx, protocol.OpSelect, name, phext.Coordinate{}, nil, buf[:0])
	fmt.Println(st, err)
	// Output:
	// OK 4 <nil>
	// OK raw <nil>
	// BAD_COORD <nil>
}

// RawConn pipelines by hand: send several requests, then read the answers
// in order.
func ExampleRawConn() {
	ctx := context.Background()
	rc, err := client.DialRaw(ctx, addr, token)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rc.Close()

	for i := 1; i <= 3; i++ {
		at := phext.Origin
		at[phext.LevelScroll] = uint16(i)
		rc.Send(protocol.OpUpdate, []byte("raw"), at, []byte("x"))
	}
	rc.Send(protocol.OpChecksum, []byte("raw"), phext.Origin, nil)
	rc.Flush()
	var resp protocol.Response
	for i := 0; i < 4; i++ {
		if err := rc.Recv(&resp); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(resp.ID, resp.Status, len(resp.Body))
	}
	// Output:
	// 1 OK 4
	// 2 OK 4
	// 3 OK 4
	// 4 OK 32
}
