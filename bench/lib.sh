# Shared settings and helpers of bench/setup.sh and bench/run.sh; sourced,
# never run. Everything lives under $BENCH_STATE, and the only servers
# started are a registry on 127.0.0.1 and dockerd on a unix socket.
# shellcheck shell=bash

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
STATE=${BENCH_STATE:-/var/tmp/forge-bench}
REG_PORT=${BENCH_REGISTRY_PORT:-5000}
REG=127.0.0.1:$REG_PORT
FORGE=${FORGE:-${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/forge}

# Debian's /usr/bin/docker 20.10 carries the BuildKit client; a newer
# docker CLI elsewhere on PATH may need buildx, which Debian lacks.
DOCKER_CLI=/usr/bin/docker
DOCKER_HOME=$STATE/docker
DOCKER_SOCK=$DOCKER_HOME/docker.sock

# Base images. The registry names serve buildah and BuildKit; forge reads
# the same names from its own store, where setup.sh imports them.
BASE_SMALL=$REG/bench/busybox:latest
BASE_MANY=$REG/bench/busybox-many:latest
BASE_DEBIAN=$REG/bench/debian:bookworm
MANY_FILES=${BENCH_MANY_FILES:-100000}

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

require_root() {
  [ "$(id -u)" = 0 ] || die "run this as root: dockerd, overlay mounts and buildah's chroot isolation need it"
}

# Prints the pid stored in PIDFILE when that process is alive and its
# command line contains MARKER, so a reused pid is never taken for ours.
live_pid() {
  local pidfile=$1 marker=$2 pid
  [ -s "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$marker" || return 1
  echo "$pid"
}

# Stops the process whose pid PIDFILE contains (if it is still ours) and
# waits up to 30 s for it to exit.
stop_pid() {
  local pidfile=$1 marker=$2 what=$3 pid i
  if ! pid=$(live_pid "$pidfile" "$marker"); then
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid"
  for i in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -0 "$pid" 2>/dev/null && die "$what (pid $pid) is still running 30 s after SIGTERM"
  rm -f "$pidfile"
  log "stopped $what (pid $pid)"
}

# registry_start DIR PORT: serves DIR/data on 127.0.0.1:PORT, with the pid
# in DIR/registry.pid.
registry_start() {
  local dir=$1 port=$2 i
  mkdir -p "$dir/data"
  if live_pid "$dir/registry.pid" "$dir/config.yml" >/dev/null; then
    return 0
  fi
  if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then
    die "another server already listens on 127.0.0.1:$port; stop it or set BENCH_REGISTRY_PORT"
  fi
  cat > "$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
  # The inner shell records its own pid and then becomes the registry.
  setsid -f sh -c 'echo $$ > "$1"; exec docker-registry serve "$2"' \
    registry "$dir/registry.pid" "$dir/config.yml" \
    >> "$dir/registry.log" 2>&1 < /dev/null
  for i in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && return 0
    sleep 0.1
  done
  die "the registry on 127.0.0.1:$port did not start; see $dir/registry.log"
}

registry_stop() {
  stop_pid "$1/registry.pid" "$1/config.yml" "registry on $1"
}

dockerd_start() {
  local i
  mkdir -p "$DOCKER_HOME"
  if live_pid "$DOCKER_HOME/dockerd.pid" "$DOCKER_HOME/data" >/dev/null; then
    return 0
  fi
  # No bridge, no iptables rules and no TCP listener: builds run with
  # --network none and the client talks over the unix socket only.
  setsid -f dockerd --data-root "$DOCKER_HOME/data" --exec-root "$DOCKER_HOME/exec" \
    --pidfile "$DOCKER_HOME/dockerd.pid" --host "unix://$DOCKER_SOCK" \
    --bridge none --iptables=false --ip6tables=false --ip-forward=false \
    --ip-masq=false --userland-proxy=false --storage-driver overlay2 \
    >> "$DOCKER_HOME/dockerd.log" 2>&1 < /dev/null
  for i in $(seq 1 150); do
    docker_cli version >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "dockerd did not start; see $DOCKER_HOME/dockerd.log"
}

dockerd_stop() {
  stop_pid "$DOCKER_HOME/dockerd.pid" "$DOCKER_HOME/data" dockerd
}

docker_cli() { DOCKER_HOST=unix://$DOCKER_SOCK "$DOCKER_CLI" "$@"; }

# buildah_cli NAME ARGS...: buildah on a private overlay store named NAME.
buildah_cli() {
  local name=$1
  shift
  # buildah keeps the folders of RUN --mount=type=cache under TMPDIR
  # (/var/tmp by default), so each store gets its own, which
  # buildah_reset removes with the store.
  mkdir -p "$STATE/buildah/$name/tmp"
  TMPDIR=$STATE/buildah/$name/tmp buildah --root "$STATE/buildah/$name/root" \
    --runroot "$STATE/buildah/$name/run" --storage-driver overlay "$@"
}

# Removes a buildah store, unmounting what a failed build left mounted.
buildah_reset() {
  local name=$1 dir=$STATE/buildah/$1 mnt
  if [ -d "$dir/root" ]; then
    buildah_cli "$name" rm --all >/dev/null 2>&1 || true
    buildah_cli "$name" rmi --all --force >/dev/null 2>&1 || true
  fi
  awk -v prefix="$dir/" 'index($2, prefix) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
  rm -rf "$dir"
}

forge_cli() {
  local root=$1
  shift
  "$FORGE" --root "$root" "$@"
}

# A fresh forge store with the bases imported from the tars setup.sh wrote.
forge_fresh_root() {
  local root=$1
  rm -rf "$root"
  mkdir -p "$root"
  forge_cli "$root" import "$STATE/base/busybox.tar" "$BASE_SMALL" >/dev/null
  if [ "${2:-}" = many ]; then
    forge_cli "$root" import "$STATE/base/busybox-many.tar" "$BASE_MANY" >/dev/null
  fi
  if [ "${2:-}" = debian ]; then
    forge_cli "$root" pull "$BASE_DEBIAN" >/dev/null
  fi
}
