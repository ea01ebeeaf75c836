# SQ in Go. CI calls only `make test` (through .ci/run).
GO        ?= go
BIN       := bin/sq
# An execution count, not a duration: go1.26's fuzz coordinator can report
# "context deadline exceeded" at the end of a timed -fuzztime with no failing
# input (go.dev/issue/75804, fixed in go1.27), which made CI red on a loaded
# box. 20000 executions take 1–4 s per target here.
FUZZTIME  ?= 20000x
PKGS      := ./...
# staticcheck v0.8.2 (2026.1.x) is the first that reads go1.26 code; pinned
# so a new release cannot turn CI red on its own.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZBIN   := bin/fuzz

.PHONY: all build run test fmt-check vet tidy tidy-check staticcheck race fuzz-short fuzz bench lint clean deploy-check e2e-haproxy e2e-tls reliability bench-compare

all: build

build:
	$(GO) build -o $(BIN) ./cmd/sq

# Starts the server on the embedded default config (./sq-data, one dev tenant
# whose token is printed at start).
run: build
	./$(BIN) host

# gofmt check + vet + go.mod tidy + staticcheck + race tests + a short pass
# of every fuzz target.
test: fmt-check vet tidy-check staticcheck race fuzz-short

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

# Rewrites go.mod/go.sum; tidy-check (in make test) only reports.
tidy:
	$(GO) mod tidy

tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run make tidy"; exit 1; }

# Any finding fails (exit status 1).
staticcheck:
	$(GO) run $(STATICCHECK) $(PKGS)

# -vet=off: the vet target has already run every analyzer on every package.
race:
	$(GO) test -race -count=1 -vet=off -timeout 20m $(PKGS)

# Runs every Fuzz target in the module for FUZZTIME each (make fuzz FUZZTIME=5m
# for a long run; a duration can end in the go1.26 deadline flake above). Each package's instrumented test binary is built once
# (go test -c -fuzz) and run per target from the package directory, with
# the corpus cache go test itself would use ($GOCACHE/fuzz/<import path>);
# a failing input is written to the package's testdata/fuzz as usual.
fuzz-short:
	@set -e; mkdir -p $(FUZZBIN); fuzzcache=$$($(GO) env GOCACHE)/fuzz; \
	$(GO) list -f '{{.Dir}} {{.ImportPath}}' $(PKGS) | while read dir pkg; do \
	  targets=$$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); \
	  [ -n "$$targets" ] || continue; \
	  bin=$(CURDIR)/$(FUZZBIN)/$$(echo $$pkg | tr / _).test; \
	  $(GO) test -c -fuzz . -o $$bin $$pkg; \
	  for t in $$targets; do \
	    echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
	    (cd $$dir && $$bin -test.run '^$$' -test.fuzz "^$$t$$" -test.fuzztime $(FUZZTIME) \
	      -test.fuzzcachedir "$$fuzzcache/$$pkg" -test.paniconexit0 -test.timeout 10m) \
	      || { echo "FAIL fuzz $$pkg $$t"; exit 1; }; \
	  done; \
	done

fuzz:
	$(MAKE) fuzz-short FUZZTIME=5m

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# SQ vs Redis (AOF everysec) vs a do-nothing gnet echo server, same load
# generator, pipeline 1 and 16 (installs redis with apt-get if missing).
bench-compare: build
	./bench/compare.sh

lint: fmt-check vet
	@if grep -rnE '\bfmt\.Print(f|ln)?\(' --include='*.go' phext protocol store server client 2>/dev/null | grep -v '_test.go'; then \
	  echo "lint: fmt.Print in library code (use slog)"; exit 1; fi

clean:
	rm -rf bin

# Deployment checks (not part of `make test`: they apt-get packages or take
# minutes). See docs/OPERATIONS.md.
deploy-check:
	deploy/check.sh

e2e-haproxy: build
	SQ_BIN=$(BIN) deploy/e2e-haproxy.sh

e2e-tls: build
	SQ_BIN=$(BIN) deploy/e2e-tls.sh

# Long forms of the reliability suite (docs/RELIABILITY.md); no -race so the
# latency and loss-window targets are asserted. About 13 minutes. The short
# forms run inside `make test`.
RELIABILITY_RUN := TestDiskFaults|TestFsyncFailureNotDurable|TestBackgroundCompactionFaults|TestRestart|TestTwoTenantsOneDir|TestPowerLoss|TestLiveProtocolFuzz|TestIdleConnections|TestSlowClients|TestHelloFlood|TestMaxFramesFromManyConns|TestInboundBoundedWhenBlocked|TestQuotaAbuse|TestManyTinyScrolls|TestNameAttacks|TestSymlinkInDataDir|TestCaseOnlyNames|TestCorruptPhextOverTheWire|TestTokensNeverLeak|TestKillLoop$$|TestHostRefusesWorldReadableConfig|TestCLINameAttacks|TestHostileTenantFigures|TestCompressedSizeBombLive|TestMemoryBudgetBusy|TestLargeReadsRefusedBeforeBuilt|TestSnapshotLimitRefusesWrites|TestPutTinyScrollsQuota|TestDeltaDoesNotHoldLockAcrossRequest

reliability:
	SQ_RELIABILITY=long $(GO) test -count=1 -timeout 60m -v -run '$(RELIABILITY_RUN)' ./store ./server ./cmd/sq
