#!/usr/bin/env bash
# Writes a small busybox root file system, made from Debian's busybox-static,
# as a tar archive that `forge import` (or `docker import`) turns into a base
# image. The archive is byte-for-byte the same on every run with the same
# busybox-static package: sorted names, owner 0:0, every mtime at the epoch.
#
# Usage: testdata/busybox-rootfs.sh OUT.tar[.gz]
set -euo pipefail

out=${1:?usage: busybox-rootfs.sh OUT.tar[.gz]}
busybox=/bin/busybox
if [ ! -x "$busybox" ] || ! "$busybox" --list >/dev/null 2>&1; then
  echo "busybox-rootfs.sh: $busybox is missing; install it with: apt-get install busybox-static" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs

mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,var/tmp,home}
chmod 755 "$root" "$root"/{bin,sbin,usr,usr/bin,usr/sbin,etc,proc,sys,dev,var,home}
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 700 "$root/root"
install -m 0755 "$busybox" "$root/bin/busybox"

# One symlink per applet, at the path busybox itself would install it.
"$busybox" --list-full | while read -r applet; do
  case "$applet" in
    bin/busybox|linuxrc|"") continue ;;
  esac
  [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done

printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
chmod 644 "$root/etc/passwd" "$root/etc/group"

compress=()
case "$out" in
  *.gz|*.tgz) compress=(--use-compress-program 'gzip -n') ;;
esac
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=pax \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    "${compress[@]}" -C "$root" -cf "$out" .
echo "busybox-rootfs.sh: wrote $out ($(wc -c < "$out") bytes)" >&2
