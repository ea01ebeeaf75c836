package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"

	"github.com/phext/sq/client"
	"github.com/phext/sq/phext"
)

const watchAbout = `Prints every committed change of the phext (under --prefix, e.g. 1.1.1/1.1.1/1.2)
as it happens, one line each: "<pos> <op> <coord> <len> <checksum>" (and the new
text, quoted, with --text), until interrupted. --json prints one JSON object a
line: pos, op, phext, coord, len, checksum (and text with --text). --from POS
resumes after position POS (the last one printed): the changes since come first.
A "resync" line (op "resync", with a reason) means changes could not be
delivered: read the phext again (sq get / sq delta). The connection is
re-dialled after a failure and the feed resumes where it stopped.`

func watchFlags(fs *flag.FlagSet, x *cmdExtra) {
	fs.StringVar(&x.prefix, "prefix", "", "only scrolls under this coordinate prefix (1 to 9 parts)")
	fs.Uint64Var(&x.from, "from", 0, "resume after this position (0: start now)")
	fs.BoolVar(&x.text, "text", false, "include each scroll's new text")
	fs.IntVar(&x.count, "count", 0, "exit after this many events (0: run until interrupted)")
}

// watchLine is the --json form of one event.
type watchLine struct {
	Pos      uint64  `json:"pos"`
	Op       string  `json:"op"`
	Phext    string  `json:"phext"`
	Coord    string  `json:"coord,omitempty"`
	Len      *uint64 `json:"len,omitempty"`
	Checksum string  `json:"checksum,omitempty"`
	Text     *string `json:"text,omitempty"`
	Omitted  bool    `json:"text_omitted,omitempty"`
	Reason   string  `json:"reason,omitempty"`
}

func cmdWatch(ctx context.Context, r *cmdRun) error {
	if _, _, err := phext.ParsePrefix(r.x.prefix); err != nil {
		return usagef("bad --prefix %q: %v", r.x.prefix, err)
	}
	o := client.WatchOptions{Prefix: r.x.prefix, Text: r.x.text, Resume: r.x.from > 0, From: r.x.from}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the feed's goroutine and connection
	ch, err := client.Watch(ctx, r.cf.addr, r.cf.token, r.cf.phext, o,
		client.WithCompression(!r.cf.noCompress), client.WithDialTimeout(r.cf.timeout))
	if err != nil {
		return err
	}
	n := 0
	for ev := range ch {
		if ev.Err != nil {
			return ev.Err
		}
		line := watchLine{Pos: ev.Pos, Op: ev.Op, Phext: r.cf.phext}
		var text string
		if ev.Resync {
			line.Op, line.Reason = "resync", ev.Reason
			text = fmt.Sprintf("%d resync %s\n", ev.Pos, ev.Reason)
		} else {
			l := ev.Len
			line.Phext, line.Coord, line.Len, line.Checksum, line.Omitted = ev.Phext, ev.Coord.String(), &l, ev.Checksum, ev.TextOmitted
			text = fmt.Sprintf("%d %s %s %d %s", ev.Pos, ev.Op, ev.Coord, ev.Len, ev.Checksum)
			if r.x.text {
				t := string(ev.Text)
				line.Text = &t
				switch {
				case ev.TextOmitted:
					text += " (text above 64 KiB omitted)"
				case ev.Op != "delete":
					text += " " + strconv.Quote(t)
				}
			}
			text += "\n"
		}
		if err := r.emit(line, text); err != nil {
			return err
		}
		n++
		if r.x.count > 0 && n >= r.x.count {
			return nil
		}
	}
	return ctx.Err()
}
