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

test: deps cluster-up
	cargo test --all-targets

# The enforcement walkthrough, typed out: binauthz run + kubectl + gpg on the test control plane.
demo: cluster-up
	cargo build --bin binauthz
	@BINAUTHZ="$${CARGO_TARGET_DIR:-$(ROOT)/target}/debug/binauthz" \
	  KUBECONFIG="$$(cd $(ROOT) && realpath -m "$${CLUSTER_DIR:-target/cluster}")/kubeconfig" \
	  $(ROOT)/tests/demo.sh
