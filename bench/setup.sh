#!/usr/bin/env bash
# Prepares a Debian 12 machine for bench/run.sh, as root.
#
# Usage: bench/setup.sh [setup|stop|status]
#   setup (default)  install buildah, docker.io, skopeo, umoci and
#                    docker-registry from Debian when missing; start the
#                    registry on 127.0.0.1:$BENCH_REGISTRY_PORT (5000) and
#                    dockerd on the unix socket $BENCH_STATE/docker/docker.sock;
#                    write the base root file systems and push them
#   stop             stop the dockerd and registry that setup started, by the
#                    process ids it recorded
#   status           print what is running
#   debian           make the Debian bookworm base with testdata/debian-base.sh
#                    (debootstrap from the host's apt mirror; cached in
#                    FORGE_TESTDATA_CACHE) and push it for `run.sh multistage`
#
# State lives in $BENCH_STATE (default /var/tmp/forge-bench); keep it on a
# local disk, because overlay mounts reject an upper folder on overlayfs.
# The base images are busybox (Debian's busybox-static) and busybox-many:
# the same root plus $BENCH_MANY_FILES (100000) small files under /many.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

PACKAGES=(buildah docker.io skopeo umoci docker-registry busybox-static curl python3 tar gzip)

install_packages() {
  local missing=() pkg policy_made=0
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [ ${#missing[@]} = 0 ]; then
    return 0
  fi
  log "installing ${missing[*]}"

  # Package scripts must not start docker or the registry with Debian's
  # configurations, which listen on every interface. A policy-rc.d that
  # exits 101 forbids starting services.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    policy_made=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  if [ $policy_made = 1 ]; then
    rm -f /usr/sbin/policy-rc.d
  fi
}

# tar_root DIR OUT: a tar of DIR that depends only on its content.
tar_root() {
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=pax \
    --pax-option=delete=atime,delete=ctime -C "$1" -cf "$2" .
}

make_bases() {
  local base=$STATE/base root
  mkdir -p "$base"
  if [ ! -s "$base/busybox.tar" ]; then
    "$REPO_DIR/testdata/busybox-rootfs.sh" "$base/busybox.tar"
  fi
  if [ ! -s "$base/busybox-many.tar" ] || [ "$(cat "$base/many-count" 2>/dev/null)" != "$MANY_FILES" ]; then
    log "writing busybox-many.tar with $MANY_FILES files under /many"
    root=$(mktemp -d "$STATE/many-root.XXXXXX")
    tar -C "$root" -xf "$base/busybox.tar"
    "$BENCH_DIR/gen-files.sh" "$root/many" "$MANY_FILES"
    tar_root "$root" "$base/busybox-many.tar"
    rm -rf "$root"
    echo "$MANY_FILES" > "$base/many-count"
  fi
}

# push_base TAR REF: a one-layer image of TAR, made with umoci and pushed
# with skopeo, so buildah and BuildKit pull it from the registry.
push_base() {
  local tar=$1 ref=$2 layout
  if skopeo inspect --tls-verify=false "docker://$ref" >/dev/null 2>&1; then
    return 0
  fi
  layout=$(mktemp -d "$STATE/layout.XXXXXX")
  umoci init --layout "$layout/oci"
  umoci new --image "$layout/oci:base"
  umoci raw add-layer --image "$layout/oci:base" --history.created 1970-01-01T00:00:00Z \
    --history.created_by "bench/setup.sh: $(basename "$tar")" "$tar"
  umoci config --image "$layout/oci:base" --created 1970-01-01T00:00:00Z --no-history \
    --config.cmd /bin/sh --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --os linux --architecture amd64
  skopeo copy -q --dest-tls-verify=false "oci:$layout/oci:base" "docker://$ref"
  rm -rf "$layout"
  log "pushed $ref"
}

status() {
  local pid
  if pid=$(live_pid "$STATE/registry/registry.pid" "$STATE/registry/config.yml"); then
    echo "registry: pid $pid on http://$REG"
  else
    echo "registry: not running"
  fi
  if pid=$(live_pid "$DOCKER_HOME/dockerd.pid" "$DOCKER_HOME/data"); then
    echo "dockerd: pid $pid on unix://$DOCKER_SOCK"
  else
    echo "dockerd: not running"
  fi
}

require_root
case "${1:-setup}" in
  setup)
    install_packages
    mkdir -p "$STATE"
    registry_start "$STATE/registry" "$REG_PORT"
    dockerd_start
    make_bases
    push_base "$STATE/base/busybox.tar" "$BASE_SMALL"
    push_base "$STATE/base/busybox-many.tar" "$BASE_MANY"
    status
    ;;
  stop)
    dockerd_stop
    registry_stop "$STATE/registry"
    ;;
  status) status ;;
  debian)
    registry_start "$STATE/registry" "$REG_PORT"
    FORGE=${FORGE:-$REPO_DIR/target/release/forge} FORGE_ROOT=$STATE/forge/debian-base \
      "$REPO_DIR/testdata/debian-base.sh" >/dev/null
    rm -rf "$STATE/forge/debian-base"
    push_base "${FORGE_TESTDATA_CACHE:-/var/cache/forge-testdata}/debian-bookworm-minbase-amd64.tar" \
      "$BASE_DEBIAN"
    ;;
  *) die "unknown action '$1'; use setup, stop, status or debian" ;;
esac
