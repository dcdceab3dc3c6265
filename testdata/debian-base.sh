#!/usr/bin/env bash
# Makes a Debian bookworm base image in forge's store: debootstrap (variant
# minbase) from the mirror that apt already uses on this machine, packed as
# a root file system tar and imported with `forge import`.
#
# The tar and the imported image are cached, so a rerun only loads the
# image and takes seconds. Delete the cache folder to fetch the packages
# again.
#
# Usage: testdata/debian-base.sh [NAME]     (default NAME: debian:bookworm)
#
# Environment:
#   FORGE                  the forge binary (default: forge on PATH)
#   FORGE_ROOT             the store forge imports into (forge's default)
#   FORGE_TESTDATA_CACHE   folder for the cached tar
#                          (default: /var/cache/forge-testdata)
#   FORGE_DEBIAN_MIRROR    mirror URL; default: the first bookworm mirror in
#                          /etc/apt/sources.list or /etc/apt/sources.list.d
#
# Needs root (debootstrap creates files owned by other users) and the
# debootstrap package.
set -euo pipefail

name=${1:-debian:bookworm}
suite=bookworm
variant=minbase
forge=${FORGE:-forge}
cache=${FORGE_TESTDATA_CACHE:-/var/cache/forge-testdata}

fail() {
  echo "debian-base.sh: $*" >&2
  exit 1
}

# Prints the URI of the first non-security source that carries $suite, from
# one-line (.list) and deb822 (.sources) files.
find_mirror() {
  local file
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    # deb [options] URI SUITE COMPONENTS...
    awk -v suite="$suite" '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite && $i !~ /security/) { print $i; exit }
      }' "$file"
  done
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    # One paragraph of "Field: value" lines per record.
    awk -v suite="$suite" '
      BEGIN { RS = ""; FS = "\n" }
      {
        types = ""; uris = ""; suites = ""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^Types:/) types = " " substr($i, 7) " "
          if ($i ~ /^URIs:/) uris = substr($i, 6)
          if ($i ~ /^Suites:/) suites = " " substr($i, 8) " "
        }
        gsub(/[ \t]+/, " ", types); gsub(/[ \t]+/, " ", suites)
        if (types ~ / deb / && index(suites, " " suite " ") && uris !~ /security/) {
          split(uris, list, " "); print list[1]; exit
        }
      }' "$file"
  done
}

command -v "$forge" >/dev/null 2>&1 || fail "forge binary \`$forge\` not found; build it with \`cargo build --release\` and set FORGE to target/release/forge"
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
tar_path=$cache/debian-$suite-$variant-$arch.tar

mkdir -p "$cache"
# Several tests may ask for the base at once: one of them builds the tar,
# the others wait on the lock and reuse it.
exec 9>"$cache/debian-$suite.lock"
flock 9

if [ ! -s "$tar_path" ]; then
  [ "$(id -u)" = 0 ] || fail "debootstrap needs root; run as root or put a cached tar at $tar_path"
  command -v debootstrap >/dev/null 2>&1 || fail "debootstrap is missing; install it with: apt-get install debootstrap"
  mirror=${FORGE_DEBIAN_MIRROR:-$(find_mirror | head -n 1)}
  [ -n "$mirror" ] || fail "no $suite mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d; set FORGE_DEBIAN_MIRROR"

  # The root lives next to the cache, not in /tmp, because debootstrap
  # needs a file system that allows device files and executables.
  work=$(mktemp -d "$cache/debootstrap.XXXXXX")
  trap 'umount -R "$work/rootfs/proc" "$work/rootfs/sys" 2>/dev/null || true; rm -rf "$work"' EXIT
  echo "debian-base.sh: debootstrap $suite ($variant) from $mirror" >&2
  if ! debootstrap --variant="$variant" --arch="$arch" "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    fail "debootstrap failed; the log above ends with its last lines"
  fi

  root=$work/rootfs
  # Apt settings the host needs for this mirror (such as an expired
  # Valid-Until on a snapshot mirror) apply inside the image as well.
  for setting in Acquire::Check-Valid-Until Acquire::Check-Date; do
    value=$(apt-config dump | awk -v key="$setting" '$1 == key { gsub(/[";]/, "", $2); print $2 }')
    if [ -n "$value" ]; then
      printf '%s "%s";\n' "$setting" "$value" >> "$root/etc/apt/apt.conf.d/99forge-testdata"
    fi
  done
  # Like the official debian image: no package lists, no downloaded
  # packages, no logs of the bootstrap.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb \
         "$root"/var/cache/apt/*.bin "$root"/var/log/* "$root"/debootstrap
  mkdir -p "$root/var/lib/apt/lists/partial"

  tar --sort=name --numeric-owner --format=pax \
      --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
      --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
      -C "$root" -cf "$tar_path.partial" .
  mv "$tar_path.partial" "$tar_path"
  echo "debian-base.sh: cached $tar_path ($(du -h "$tar_path" | cut -f1))" >&2
fi

# Importing compresses the whole root file system again, which takes long
# in a debug build of forge, so the imported image is also cached as an OCI
# archive that `forge load` reads in a second or two. The archive carries
# NAME, so there is one per NAME, and a new tar makes it stale.
archive=$cache/debian-$suite-$variant-$arch.$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '_').oci.tar
if [ -s "$archive" ] && [ "$archive" -nt "$tar_path" ]; then
  "$forge" load --quiet --input "$archive"
  echo "debian-base.sh: loaded $name from $archive" >&2
  exit 0
fi

"$forge" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["bash"]' \
  --message "debootstrap --variant=$variant $suite" \
  "$tar_path" "$name" >/dev/null
"$forge" save --output "$archive.partial" "$name"
mv "$archive.partial" "$archive"
echo "debian-base.sh: imported $name from $tar_path and cached it as $archive" >&2
