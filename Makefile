# Palisade build and test commands. `make test` is the set-up check: it
# installs any missing test peers (conformance/install-peers.sh), then runs
# every test with a timeout long enough for the conformance suite (go test's
# default of 10 minutes is not).

GO ?= go

.PHONY: build test vet peers

build:
	$(GO) build -o palisade .

peers:
	conformance/install-peers.sh

test: peers
	$(GO) test -count=1 -timeout 25m ./...

vet:
	$(GO) vet ./...
