#!/usr/bin/env bash
# Builds and runs the quickstart image on a machine with no registry. It
# builds forge if needed and imports a busybox base made from Debian's
# busybox-static. Then it builds ./Dockerfile twice (the second time from
# the cache), shows the image, and runs it with `forge run` or podman.
#
# Usage: examples/quickstart/run.sh [ARGUMENT...]   (arguments go to the
# image's entrypoint)
#
# Environment:
#   FORGE        forge binary (default: target/release/forge, else `forge`
#                on PATH, else target/release/forge built with cargo)
#   FORGE_ROOT   store to use and keep; default: a temporary store that is
#                removed at exit
#
# Needs busybox-static (installed with apt-get when missing and run as
# root), and podman and runc when forge has no `run`.
# Tested as root; without root forge and podman use user namespaces,
# which need uidmap.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() {
  printf '\n==> %s\n' "$*" >&2
}

# 1. forge itself.
if [ -z "${FORGE:-}" ]; then
  FORGE=${CARGO_TARGET_DIR:-$repo/target}/release/forge
  if [ ! -x "$FORGE" ] && command -v forge >/dev/null; then
    FORGE=$(command -v forge)
  elif [ ! -x "$FORGE" ]; then
    step "cargo build --release"
    (cd "$repo" && cargo build --release -p forge-cli)
  fi
fi
export FORGE_ROOT=${FORGE_ROOT:-$work/store}
forge() {
  "$FORGE" "$@"
}

# 2. A busybox base image, made without a registry.
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' \
   && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  step "apt-get install busybox-static"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static \
    || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static; }
fi
step "forge import busybox"
"$repo/testdata/busybox-rootfs.sh" "$work/busybox.tar"
forge import "$work/busybox.tar" busybox

# 3. Build, then build again: the second build takes every step from the
#    cache.
step "forge build -t quickstart examples/quickstart"
forge build --progress plain -t quickstart "$here"
step "forge build again (cached)"
forge build --progress plain -t quickstart "$here"

# 4. What the store contains now.
step "forge images"
forge images
step "forge history quickstart"
forge history quickstart

# 5. Run it: with `forge run` where this forge has it, else with podman,
#    which loads the docker-archive that forge save writes into a
#    temporary podman store.
if forge run --help >/dev/null 2>&1; then
  step "forge run --rm quickstart $*"
  forge run --rm quickstart "$@"
  exit 0
fi
step "podman run quickstart $*"
forge save --format docker -o "$work/quickstart.tar" quickstart
podman=(podman --root "$work/podman/root" --runroot "$work/podman/runroot"
        --storage-driver vfs --runtime runc)
loaded=$("${podman[@]}" load -q -i "$work/quickstart.tar" | sed -n 's/^Loaded image[^:]*: *//p' | head -n 1)
[ -n "$loaded" ] || { echo "run.sh: podman load printed no image name" >&2; exit 1; }
"${podman[@]}" run --rm --network none \
  --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
  "$loaded" "$@"
"${podman[@]}" rmi --all --force >/dev/null 2>&1 || true
