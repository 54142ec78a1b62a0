# binauthz developer tasks. The test control plane is described in tests/controlplane/README.md.
#
# The control plane always lives under this checkout's target/ (binary in target/controlplane/bin,
# state in target/cluster, or $CLUSTER_DIR); cargo honours CARGO_TARGET_DIR as usual.

ROOT    := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
CP_SRC  := $(ROOT)/tests/controlplane
CP_BIN  := $(ROOT)/target/controlplane/bin/controlplane
CLUSTER := $(CP_SRC)/cluster.sh

# Must match k8s.io/kubernetes in tests/controlplane/go.mod; stamped into /version.
K8S_VERSION := v1.34.3
VERSION_PKG := k8s.io/component-base/version
GO_LDFLAGS  := -s -w -X $(VERSION_PKG).gitVersion=$(K8S_VERSION) -X $(VERSION_PKG).gitMajor=1 \
	-X $(VERSION_PKG).gitMinor=34 -X $(VERSION_PKG).gitTreeState=clean
# Static binary (no C toolchain), no local paths or VCS stamp in it (so unrelated commits never
# force a relink), never download a Go toolchain. Change these flags and the first build is cold again.
GO_BUILD := CGO_ENABLED=0 GOTOOLCHAIN=local go build -buildvcs=false -trimpath -tags notest

.PHONY: deps controlplane cluster-up cluster-down cluster-status test demo

deps:
	@$(CLUSTER) deps

controlplane: $(CP_BIN)

# Make skips Go entirely when no source changed; otherwise Go's build cache does the rest.
$(CP_BIN): $(CP_SRC)/go.mod $(CP_SRC)/go.sum $(wildcard $(CP_SRC)/*.go)
	@mkdir -p $(@D)
	cd $(CP_SRC) && $(GO_BUILD) -ldflags '$(GO_LDFLAGS)' -o $@ .
	@touch $@

cluster-up: controlplane
	@$(CLUSTER) up

cluster-down:
	@$(CLUSTER) down

cluster-status:
	@$(CLUSTER) status

test: deps cluster-up tools
	cargo test --all-targets

# Real tools the tests use, built from their Go modules at pinned versions, cached under
# target/tools/NAME-VERSION (a new version is a new folder; nothing is rebuilt otherwise).
TOOLS    := $(ROOT)/target/tools
KREW     := $(TOOLS)/krew-v0.4.3/krew
CRANE    := $(TOOLS)/crane-v0.21.9/crane
REGISTRY := $(TOOLS)/registry-v3.1.1/registry
COSIGN2  := $(TOOLS)/cosign-v2.6.5/cosign
COSIGN3  := $(TOOLS)/cosign-v3.1.3/cosign
HELM     := $(TOOLS)/helm-v4.3.2/helm
REPORTS  := $(TOOLS)/openreports-v0.2.1/openreports.io_reports.yaml
GO_TOOL   = CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOBIN=$(@D) go install -trimpath -ldflags='-s -w'

.PHONY: tools
tools: $(KREW) $(CRANE) $(REGISTRY) $(COSIGN2) $(COSIGN3) $(HELM) $(REPORTS)

$(KREW):
	$(GO_TOOL) sigs.k8s.io/krew/cmd/krew@v0.4.3

# An OCI registry without authentication (crane registry serve) and test images (crane append).
$(CRANE):
	$(GO_TOOL) github.com/google/go-containerregistry/cmd/crane@v0.21.9

# The CNCF distribution registry, for a registry with authentication (htpasswd).
$(REGISTRY):
	$(GO_TOOL) github.com/distribution/distribution/v3/cmd/registry@v3.1.1

# cosign v2 (signatures in the sha256-<hex>.sig tag) and v3 (Sigstore bundles as referrers).
$(COSIGN2):
	$(GO_TOOL) github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5

$(COSIGN3):
	$(GO_TOOL) github.com/sigstore/cosign/v3/cmd/cosign@v3.1.3

# The OpenReports CRDs (Report, ClusterReport) as their Go module ships them.
$(REPORTS):
	@mkdir -p $(@D)
	dir=$$(cd $(@D) && GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json github.com/openreports/reports-api@v0.2.1 \
	  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); cp "$$dir"/config/crd/*.yaml $(@D)/

# Helm v4, for the chart's tests (lint, template, install, upgrade, uninstall).
$(HELM):
	$(GO_TOOL) helm.sh/helm/v4/cmd/helm@v4.3.2

# The enforcement walkthrough, typed out: binauthz run + kubectl + gpg on the test control plane.
demo: deps cluster-up
	cargo build --bin binauthz
	@BINAUTHZ="$${CARGO_TARGET_DIR:-$(ROOT)/target}/debug/binauthz" \
	  KUBECONFIG="$$(cd $(ROOT) && realpath -m "$${CLUSTER_DIR:-target/cluster}")/kubeconfig" \
	  $(ROOT)/tests/demo.sh

# ---- Installing the CLI ----
# `make install` builds the release binary and installs it as $(PREFIX)/bin/binauthz, with
# kubectl-binauthz beside it (kubectl finds plugins by that name). `install-bin BIN=...` installs
# a binary already built (the tests use it); DESTDIR is honoured for packaging.
PREFIX ?= /usr/local
BIN    ?= $${CARGO_TARGET_DIR:-$(ROOT)/target}/release/binauthz

.PHONY: install install-bin

install:
	cargo build --release --locked --bin binauthz
	@$(MAKE) --no-print-directory install-bin

install-bin:
	install -d "$(DESTDIR)$(PREFIX)/bin"
	install -m 0755 "$(BIN)" "$(DESTDIR)$(PREFIX)/bin/binauthz"
	ln -sf binauthz "$(DESTDIR)$(PREFIX)/bin/kubectl-binauthz"

# ---- Releasing: archives and the krew plugin manifest ----
# `make dist` packs this platform's release binary as target/dist/binauthz-VERSION-OS-ARCH.tar.gz
# (`dist-bin BIN=...` packs a binary already built). `make krew-manifest RELEASE_URL=...` renders
# config/krew/binauthz.yaml with the checksums of the four platforms' archives.
VERSION   ?= v$(shell sed -n 's/^version = "\(.*\)"/\1/p' $(ROOT)/Cargo.toml | head -1)
DIST      ?= $${CARGO_TARGET_DIR:-$(ROOT)/target}/dist
OS        ?= $(shell uname -s | tr A-Z a-z)
ARCH      ?= $(shell uname -m | sed -e 's/x86_64/amd64/' -e 's/aarch64/arm64/')
PLATFORMS := linux-amd64 linux-arm64 darwin-amd64 darwin-arm64

.PHONY: dist dist-bin krew-manifest

dist:
	cargo build --release --locked --bin binauthz
	@$(MAKE) --no-print-directory dist-bin

dist-bin:
	@set -e; stage=$$(mktemp -d); trap 'rm -rf "$$stage"' EXIT; \
	  install -m 0755 "$(BIN)" "$$stage/binauthz"; cp "$(ROOT)/README.md" "$$stage/"; \
	  mkdir -p "$(DIST)"; \
	  tar -C "$$stage" --owner=0 --group=0 --mtime=@0 -czf "$(DIST)/binauthz-$(VERSION)-$(OS)-$(ARCH).tar.gz" binauthz README.md; \
	  echo "$(DIST)/binauthz-$(VERSION)-$(OS)-$(ARCH).tar.gz"

krew-manifest:
	@set -e; test -n "$(RELEASE_URL)" || { echo "error: give RELEASE_URL, where the archives of $(VERSION) are published" >&2; exit 2; }; \
	  args="-e s|\$${VERSION}|$(VERSION)|g -e s|\$${RELEASE_URL}|$(RELEASE_URL)|g"; \
	  for p in $(PLATFORMS); do \
	    archive="$(DIST)/binauthz-$(VERSION)-$$p.tar.gz"; \
	    test -f "$$archive" || { echo "error: $$archive is missing: run make dist on $$p" >&2; exit 2; }; \
	    var=SHA256_$$(echo $$p | tr a-z- A-Z_); \
	    args="$$args -e s|\$${$$var}|$$(sha256sum "$$archive" | cut -d' ' -f1)|g"; \
	  done; \
	  sed -e "/^#/d" $$args "$(ROOT)/config/krew/binauthz.yaml" > "$(DIST)/binauthz.yaml"; \
	  echo "$(DIST)/binauthz.yaml"


# ---- Measured: benchmarks and fuzzing (README.md, "Benchmarks" and "Fuzzing") ----

.PHONY: bench bench-perf bench-admission bench-scale bench-sync fuzz fuzz-build

# `make bench` runs the three benchmarks (release builds; figures printed, no timing asserted),
# keeps each one's output in $(BENCH_OUT) and ends with the line of the four headline figures.
# BENCH_QUICK=1 checks the benches in a few minutes.
BENCH_OUT ?= $(ROOT)/target/bench
HEADLINE  := admission_cpu_ratio p99_us verify_rsa2048_per_s ready_10k_s floor_p99_us cpu_ratio_16k \
	pgp_rsa2048_verify_over_raw

bench: bench-perf bench-admission bench-sync bench-scale
	@for key in $(HEADLINE); do \
	  value=$$(grep -hoE "(^| )$$key=[^ ]+" $(BENCH_OUT)/perf.txt $(BENCH_OUT)/admission.txt \
	    $(BENCH_OUT)/scale.txt | tail -n 1 | tr -d ' '); \
	  printf '%s ' "$${value:-$$key=n/a}"; \
	done | sed 's/ $$//'; echo

# Verification vs raw crypto, trust index, policy; `make bench-perf BENCH_ARGS=index` runs one
# section (verify, index, policy).
BENCH_ARGS ?=
bench-perf:
	@mkdir -p $(BENCH_OUT)
	cargo bench --bench perf -- $(BENCH_ARGS) > $(BENCH_OUT)/perf.txt
	@cat $(BENCH_OUT)/perf.txt

# The external load generator of the admission bench (open loop, latency correction), pinned.
OHA := $(ROOT)/target/tools/oha-1.16.0/bin/oha
$(OHA):
	cargo install oha --version 1.16.0 --locked --root $(ROOT)/target/tools/oha-1.16.0

# Admission load: the webhook over 100k attestations vs a bare TLS+JSON floor, in process and
# driven by oha (servers on CPU 0, oha on CPU 1).
bench-admission: $(OHA)
	@mkdir -p $(BENCH_OUT)
	cargo bench --bench admission > $(BENCH_OUT)/admission.txt
	@cat $(BENCH_OUT)/admission.txt

# Registry signatures: 1,000 cosign-signed images synced by one replica, on the test control
# plane and a crane registry. SYNC_IMAGES=N changes the count.
bench-sync: cluster-up tools
	@mkdir -p $(BENCH_OUT)
	cargo bench --bench sync > $(BENCH_OUT)/sync.txt
	@cat $(BENCH_OUT)/sync.txt

# Scale: one replica over 1k/10k/100k ImageAttestations, on a control plane of its own
# (target/scale-cluster, ports 36443/32379/32380). SCALE_SIZES=1000,10000 picks sizes.
bench-scale: controlplane
	@mkdir -p $(BENCH_OUT)
	cargo bench --bench scale > $(BENCH_OUT)/scale.txt
	@cat $(BENCH_OUT)/scale.txt

# cargo-fuzz needs nightly flags; only stable Rust is installed, so RUSTC_BOOTSTRAP=1 unlocks them.
# `cargo install cargo-fuzz` once. Our code forbids unsafe, so no sanitizer (-s none): libFuzzer
# finds panics, overflows (debug assertions on, -a) and hangs. Each target runs FUZZ_SECONDS;
# new inputs go to fuzz/corpus/TARGET (only the committed seed-* files are tracked), crashes to
# fuzz/artifacts/TARGET. Longer: `make fuzz FUZZ_SECONDS=3600 FUZZ_TARGETS=payload`.
# Builds go to FUZZ_TARGET_DIR, never to the main target dir (other flags would rebuild it all).
FUZZ_SECONDS ?= 20
FUZZ_TARGETS ?= image_reference payload pgp_key pgp_verify pkix decode_signature workload manifests \
	admission_review
FUZZ_TARGET_DIR ?= $(ROOT)/fuzz/target
FUZZ := cd $(ROOT)/fuzz && CARGO_TARGET_DIR=$(FUZZ_TARGET_DIR) RUSTC_BOOTSTRAP=1 cargo fuzz

fuzz-build:
	$(FUZZ) build -s none -a

fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
		$(FUZZ) run -s none -a $$t -- -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=4096 -print_final_stats=1; \
	done
