# Palisade build and test commands. `make test` is the set-up check: it
# installs any missing test peers (conformance/install-peers.sh), then runs
# every test with a timeout long enough for the conformance suite (go test's
# default of 10 minutes is not).

GO ?= go

.PHONY: build test vet peers bench bench-quick bench-peers

build:
	$(GO) build -o palisade .

peers:
	conformance/install-peers.sh

test: peers
	$(GO) test -count=1 -timeout 25m ./...

vet:
	$(GO) vet ./...

# `make bench` compares Palisade with ejabberd and Prosody side by side on
# loopback (conformance/cmd/palisade-bench; about 20 minutes) and writes
# bench-out/bench.json and bench-out/bench.md; it then runs the pairs of
# Palisade with the archive off and on twice more, back to back, and judges
# the archive's cost (issue 4) on the median of the three paired rounds.
# `make bench-quick` is a short run (about 4 minutes, one round). Both
# install ejabberd and Prosody from Debian when they are missing
# (conformance/bench-peers.sh); the peers run as child processes with their
# own config under a temporary directory.
BENCH_FLAGS ?=

bench-peers:
	conformance/bench-peers.sh

palisade-bench: FORCE
	$(GO) build -o palisade-bench ./conformance/cmd/palisade-bench

bench: bench-peers build palisade-bench
	./palisade-bench -palisade ./palisade -rounds 3 -out bench-out $(BENCH_FLAGS)

bench-quick: bench-peers build palisade-bench
	./palisade-bench -quick -palisade ./palisade -out bench-out $(BENCH_FLAGS)

.PHONY: FORCE
FORCE:
