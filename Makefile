# Skein's build and test entry points. `make test` is what CI runs.
GO ?= go
STATICCHECK_VERSION := v0.8.2
BIN := bin
# How every Skein binary is built: static, with these tags. internal/release
# says why, and the builds made from Go code (skein-bench, the end-to-end
# tests) use it; its test holds the two together.
TAGS := grpcnotrace
RELEASE_ENV := CGO_ENABLED=0

.PHONY: build build-fips test test-short vet staticcheck check bench clean e2e

build:
	$(RELEASE_ENV) $(GO) build -tags '$(TAGS)' -o $(BIN)/ ./cmd/...

# Every binary built against the Go Cryptographic Module v1.0.0, the
# version on the CMVP validated list (the toolchain's `certified` alias
# names the same snapshot today, but moves when a newer one is certified;
# a pin moves only here). Such binaries run in FIPS 140-3 mode by default
# (GODEBUG=fips140=on); see docs/fips.md.
FIPS140 ?= v1.0.0
FIPS_BIN ?= $(BIN)/fips
build-fips:
	$(RELEASE_ENV) GOFIPS140=$(FIPS140) $(GO) build -tags '$(TAGS)' -o $(FIPS_BIN)/ ./cmd/...

# The full suite: unit tests and the end-to-end tests in network namespaces
# (those need root and skip without it). One package at a time: the
# end-to-end tests measure how requests spread over replicas by latency, and
# another package's load on the same two cores would skew what they see.
# The timeout is per package: the end-to-end package takes about 22 min
# cold (its binaries built static, then a FIPS build), so 30 left too
# little room for a slower machine.
test:
	$(GO) test -p 1 -count=1 -timeout 45m ./...

# Unit tests only: no namespaces, no processes.
test-short:
	$(GO) test -short -count=1 ./...

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

check: vet staticcheck test

bench:
	$(GO) run ./bench/cmd/skein-bench

clean:
	rm -rf $(BIN)

# Only the end-to-end tests, verbosely, so the spread of calls over
# replicas, the latencies and the demo's stat table can be seen.
e2e:
	$(GO) test -count=1 -v -timeout 20m ./e2e/

# Regenerate the Go code beside proto/*/*.proto with pinned protoc and
# plugins (scripts/proto.sh installs them); proto-check fails when the
# committed generated code is stale.
.PHONY: proto proto-check
proto:
	scripts/proto.sh

proto-check:
	scripts/proto.sh check

# Regenerate the CRDs in charts/skein/crds/ and the DeepCopy methods from the Go
# types in api/v1alpha1 with a pinned controller-gen (scripts/crds.sh
# installs it); crds-check fails when the committed files are stale.
.PHONY: crds crds-check
crds:
	scripts/crds.sh

crds-check:
	scripts/crds.sh check

# Copy the Gateway API CRDs Skein reads (HTTPRoute, GRPCRoute, standard
# channel) from the gateway-api module go.mod requires into
# charts/skein/files/gateway-api/; config's tests fail when the copy is stale.
.PHONY: gateway-api-crds
gateway-api-crds:
	dir=$$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api) && \
	install -m 644 $$dir/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml \
		$$dir/config/crd/standard/gateway.networking.k8s.io_grpcroutes.yaml charts/skein/files/gateway-api/

# Lints charts/skein and renders it with the Helm CLI, pinned and built
# from the module proxy (scripts/helm.sh installs it): the chart must stay
# installable by Helm itself, not only through skein install's library.
.PHONY: chart-check
chart-check:
	scripts/helm.sh check
