#!/usr/bin/env bash
# Test control plane lifecycle, called by the root Makefile (see README.md next to this file).
#   cluster.sh deps | up | down | status
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${CONTROLPLANE_BIN:-$ROOT/target/controlplane/bin/controlplane}
export CONTROLPLANE_DIR=${CLUSTER_DIR:-$ROOT/target/cluster}
TIMEOUT=${CLUSTER_TIMEOUT:-120}
PIDFILE=$CONTROLPLANE_DIR/controlplane.pid
LOG=$CONTROLPLANE_DIR/controlplane.log
KUBECONFIG_PATH=$CONTROLPLANE_DIR/kubeconfig
PORTS=("${CONTROLPLANE_APISERVER_PORT:-16443}" "${CONTROLPLANE_ETCD_PORT:-12379}" "${CONTROLPLANE_ETCD_PEER_PORT:-12380}")
DEB_PACKAGES=(nettle-dev libclang-dev clang pkg-config)
GO_MIN=1.24

log_tail() { echo "--- last 40 lines of $LOG ---" >&2; tail -n 40 "$LOG" >&2 2>/dev/null || true; }

# Prints the pid of this state dir's control plane when it is alive.
running_pid() {
  local pid
  [[ -f $PIDFILE ]] && pid=$(<"$PIDFILE") && [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null && grep -qa controlplane "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

# Waits until /readyz answers ok; fails early when the process dies.
wait_ready() {
  local pid=$1 deadline=$((SECONDS + TIMEOUT))
  until "$BIN" ready 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "control plane (pid $pid) exited during start-up" >&2; log_tail; return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "control plane (pid $pid) not ready after ${TIMEOUT}s" >&2; log_tail; return 1
    fi
    sleep 0.5
  done
}

lock() {
  mkdir -p "$CONTROLPLANE_DIR"
  exec 9>"$CONTROLPLANE_DIR/lock"
  flock -w "$TIMEOUT" 9 || { echo "timed out waiting for $CONTROLPLANE_DIR/lock" >&2; exit 1; }
}

up() {
  [[ -x $BIN ]] || { echo "$BIN missing: run 'make controlplane'" >&2; exit 1; }
  lock # parallel test binaries: the first starts it, the others wait here and then reuse it
  local pid start=$SECONDS
  if pid=$(running_pid); then
    wait_ready "$pid"
    echo "control plane already running (pid $pid), kubeconfig: $KUBECONFIG_PATH"
    return
  fi
  for port in "${PORTS[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "port 127.0.0.1:$port is already in use (another control plane?). Share it with" \
        "CLUSTER_DIR=<its state dir>, or move with CONTROLPLANE_{APISERVER,ETCD,ETCD_PEER}_PORT" >&2
      exit 1
    fi
  done
  [[ -f $LOG ]] && mv -f "$LOG" "$LOG.1"
  # New session, no terminal, no inherited lock fd; no proxy, so webhook calls to 127.0.0.1 go direct.
  env -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy -u ALL_PROXY -u all_proxy \
    setsid nohup "$BIN" serve </dev/null >"$LOG" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PIDFILE"
  wait_ready "$pid"
  echo "control plane up in $((SECONDS - start))s (pid $pid, log $LOG), kubeconfig: $KUBECONFIG_PATH"
}

down() {
  lock
  local pid
  if ! pid=$(running_pid); then
    rm -f "$PIDFILE"; echo "no control plane running for $CONTROLPLANE_DIR"; return
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; echo "control plane stopped (pid $pid)"; return; }
    sleep 0.5
  done
  echo "control plane (pid $pid) ignored SIGTERM for 30s: killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  # A killed process closes its sockets only when its last thread is gone: wait for the ports.
  local port
  for port in "${PORTS[@]}"; do
    for _ in $(seq 1 40); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
      sleep 0.25
    done
  done
  rm -f "$PIDFILE"
}

status() {
  local pid
  if pid=$(running_pid) && "$BIN" ready; then
    echo "running and ready (pid $pid), kubeconfig: $KUBECONFIG_PATH"
  else
    echo "not running (or not ready) for $CONTROLPLANE_DIR"; return 1
  fi
}

deps() {
  local missing=() p
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    if ((EUID == 0)); then
      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    else
      echo "missing Debian packages; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi
  if ! command -v go >/dev/null; then
    echo "Go is missing: install Go >= $GO_MIN (https://go.dev/doc/install) and put 'go' on PATH;" \
      "it builds kube-apiserver for the tests (tests/controlplane)" >&2
    exit 1
  fi
  local v; v=$(go env GOVERSION); v=${v#go}
  if [[ $(printf '%s\n' "$GO_MIN" "$v" | sort -V | head -n1) != "$GO_MIN" ]]; then
    echo "Go $v is too old: install Go >= $GO_MIN (https://go.dev/doc/install)" >&2
    exit 1
  fi
  command -v kubectl >/dev/null || { echo "kubectl is missing: the tests run it; install kubectl >= 1.32" >&2; exit 1; }
  echo "deps ok: ${DEB_PACKAGES[*]}, go $v, $(kubectl version --client 2>/dev/null | head -n1)"
}

case ${1:-} in
  deps | up | down | status) "$1" ;;
  *) echo "usage: $0 deps|up|down|status" >&2; exit 2 ;;
esac
