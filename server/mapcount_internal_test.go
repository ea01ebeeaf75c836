package server

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapCount is the number of the process's mappings.
func mapCount(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skip(err)
	}
	return bytes.Count(b, []byte("\n"))
}

// TestUnmapFrameAtMapLimit: frames mapped next to each other merge into
// one kernel mapping, so unmapping one between two others splits it,
// which munmap refuses (ENOMEM) once the process is at vm.max_map_count.
// unmapFrame panicked then ("a bad argument: a bug"), in a worker, which
// took the whole server down. Here the process is filled up to its
// mapping limit with single pages after mapping adjacent frames: the
// middle frame's unmap reports the error, does not panic, and its pages
// are no longer resident (MADV_DONTNEED). It runs in a child process of
// its own: at the limit any mmap fails, the Go runtime's included, and no
// other test's goroutines should be there to need one.
func TestUnmapFrameAtMapLimit(t *testing.T) {
	if os.Getenv("SQ_TEST_MAP_LIMIT_CHILD") == "1" {
		unmapAtMapLimit(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestUnmapFrameAtMapLimit$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "SQ_TEST_MAP_LIMIT_CHILD=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if strings.Contains(string(out), "--- SKIP: TestUnmapFrameAtMapLimit") {
		t.Skip("skipped in the child")
	}
	if !strings.Contains(string(out), "--- PASS: TestUnmapFrameAtMapLimit") {
		t.Fatal("the child did not run the test to a pass")
	}
}

func unmapAtMapLimit(t *testing.T) {
	const size = 2 << 20
	var fr [][]byte
	for range 8 {
		b, err := mapFrame(size)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < size; i += 4096 {
			b[i] = 1
		}
		fr = append(fr, b)
	}
	mid := -1
	for i := 1; i+1 < len(fr) && mid < 0; i++ {
		a := uintptr(unsafe.Pointer(&fr[i][0]))
		if uintptr(unsafe.Pointer(&fr[i-1][0])) == a+size && uintptr(unsafe.Pointer(&fr[i+1][0]))+size == a {
			mid = i
		}
	}
	t.Cleanup(func() {
		for _, b := range fr {
			unix.MunmapPtr(unsafe.Pointer(&b[0]), size)
		}
	})
	if mid < 0 {
		t.Skip("the kernel placed no frame between two others")
	}
	before := mapCount(t)
	// Fill the mapping table (alternating protections, so no two merge);
	// nothing below allocates until they are unmapped again.
	fill := make([]unsafe.Pointer, 0, 1<<17)
	prot := [2]int{unix.PROT_READ, unix.PROT_READ | unix.PROT_WRITE}
	for i := 0; i < cap(fill); i++ {
		p, err := unix.MmapPtr(-1, 0, nil, 4096, prot[i%2], unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			break
		}
		fill = append(fill, p)
	}
	var unmapped bool
	var err error
	func() {
		defer func() {
			for _, p := range fill {
				unix.MunmapPtr(p, 4096)
			}
			if r := recover(); r != nil {
				t.Fatalf("unmapFrame at the mapping limit panicked: %v", r)
			}
		}()
		unmapped, err = unmapFrame(fr[mid])
	}()
	t.Logf("%d mappings, %d more to the limit; unmap: %v %v", before, len(fill), unmapped, err)
	if err == nil {
		t.Skip("munmap did not fail at the limit on this kernel")
	}
	if !unmapped {
		t.Fatalf("unmapFrame: unmapped false (%v), want its pages released", err)
	}
	vec := make([]byte, size/4096)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&fr[mid][0])), size, uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	for i, v := range vec {
		if v&1 != 0 {
			t.Fatalf("page %d of the frame still resident after the failed unmap", i)
		}
	}
}
