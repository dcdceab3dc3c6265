#!/usr/bin/env bash
# Writes COUNT small text files (30 to 400 bytes each) spread over 20
# folders d00..d19 below DIR, replacing what DIR held. The content depends
# only on the index, and every mtime is 2000-01-01, so two runs give
# byte-identical trees.
#
# Usage: bench/gen-files.sh DIR [COUNT]   (COUNT defaults to 2000)
set -euo pipefail

dir=${1:?usage: gen-files.sh DIR [COUNT]}
count=${2:-2000}
rm -rf "$dir"
mkdir -p "$dir"
for d in $(seq 0 19); do mkdir -p "$dir/$(printf 'd%02d' "$d")"; done

awk -v dir="$dir" -v count="$count" 'BEGIN {
  for (i = 0; i < count; i++) {
    path = sprintf("%s/d%02d/f%06d.txt", dir, i % 20, i)
    line = sprintf("entry %d:", i)
    for (k = 0; k < 10 + i % 50; k++) line = line " " (i * 7 + k)
    print line > path
    close(path)
  }
}'
find "$dir" -exec touch -h -d @946684800 {} +
