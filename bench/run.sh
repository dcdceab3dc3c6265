#!/usr/bin/env bash
# Times forge against buildah and BuildKit, as root, after bench/setup.sh.
#
# Usage: bench/run.sh [scenario...]     default: nochange export snapshot full push multistage
#   nochange  dockerfiles/nochange.Dockerfile over a 2,000-file context: one
#             cold build per tool, then no-change rebuilds
#   export    forge building a 1 GiB layer (COPY big.bin /, a fresh store per
#             run) against `gzip -6` of the same layer tar on one core
#   snapshot  one RUN whose cache a new build argument busts, over the
#             busybox base and over busybox plus 100,000 files
#   full      dockerfiles/full.Dockerfile: cold builds, cached rebuilds, then
#             rebuilds after one context file changed
#   push      push and re-push of an image with a 200 MiB layer to a fresh
#             registry: forge push, buildah push, skopeo copy; skipped when
#             the forge binary has no push command
#   multistage  examples/multistage (gcc in a Debian builder stage, apt
#             with cache mounts, a static binary in a scratch image): cold
#             builds (and, as cold-apt, the time apt-get itself takes in
#             them), cached rebuilds and rebuilds after hello.c changed.
#             Needs the Debian base: `bench/setup.sh debian` (debootstrap
#             from the host's apt mirror) makes and pushes it
#
# Every timed command is preceded by an untimed `sync`. Within each run
# the tools take turns in one order, and the next run reverses it. The
# raw times go to $BENCH_STATE/results/SESSION.tsv and a Markdown summary
# to SESSION.md (bench/summary.py).
#
# Environment:
#   BENCH_RUNS=5            timed runs per tool and case (snapshot: twice this)
#   BENCH_COLD_RUNS=3       cold builds per tool in `full` (`multistage`: 2)
#   BENCH_EXPORT_RUNS=3     runs of `export`
#   BENCH_TOOLS="forge buildkit buildah"   builders to compare
#   BENCH_CONTEXT_FILES=2000, BENCH_EXPORT_MIB=1024, BENCH_PUSH_MIB=200
#   FORGE=PATH              the forge binary (default target/release/forge)
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

RUNS=${BENCH_RUNS:-5}
# BuildKit's RUN network: none, as the scenarios without downloads need
# nothing else and dockerd runs without a bridge.
BUILDKIT_NETWORK=none
COLD_RUNS=${BENCH_COLD_RUNS:-3}
EXPORT_RUNS=${BENCH_EXPORT_RUNS:-3}
read -r -a TOOLS <<< "${BENCH_TOOLS:-forge buildkit buildah}"
CONTEXT_FILES=${BENCH_CONTEXT_FILES:-2000}
EXPORT_MIB=${BENCH_EXPORT_MIB:-1024}
PUSH_MIB=${BENCH_PUSH_MIB:-200}
PUSH_PORT=$((REG_PORT + 1))
DOCKERFILES=$BENCH_DIR/dockerfiles

SESSION=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=$STATE/results
TSV=$RESULTS/$SESSION.tsv
LOGS=$STATE/logs/$SESSION

# ------------------------------------------------------------------ timing

# Appends one measurement: scenario, case, tool, run number, seconds.
record() {
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$TSV"
}

# timed LOGNAME COMMAND...: runs COMMAND after an untimed sync, with its
# output in $LOGS/LOGNAME.log, and sets ELAPSED to its wall time in
# seconds. A failing command ends the session with the log's tail.
ELAPSED=
timed() {
  local logfile=$LOGS/$1.log start end
  shift
  sync
  start=$EPOCHREALTIME
  if ! "$@" > "$logfile" 2>&1; then
    tail -n 20 "$logfile" >&2
    die "command failed: $*; full output in $logfile"
  fi
  end=$EPOCHREALTIME
  ELAPSED=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')
}

# Prints the words of the list in the order of run RUN: as given for odd
# runs, reversed for even ones.
turn_order() {
  local run=$1 i
  shift
  local items=("$@")
  if [ $((run % 2)) = 1 ]; then
    printf '%s\n' "${items[@]}"
  else
    for ((i = ${#items[@]} - 1; i >= 0; i--)); do printf '%s\n' "${items[i]}"; done
  fi
}

# ------------------------------------------------------------------ builders

# build TOOL STORE DOCKERFILE CONTEXT [BUILD-ARG...]: one build of
# DOCKERFILE tagged bench/STORE, in the tool's store named STORE.
build() {
  local tool=$1 store=$2 dockerfile=$3 context=$4 arg
  shift 4
  local args=(--build-arg "BASE=$BASE_SMALL")
  for arg in "$@"; do args+=(--build-arg "$arg"); done
  case $tool in
    forge)
      forge_cli "$STATE/forge/$store" build --progress plain -f "$dockerfile" \
        -t "bench/$store:latest" "${args[@]}" "$context" ;;
    buildkit)
      DOCKER_BUILDKIT=1 docker_cli build --network "$BUILDKIT_NETWORK" --progress plain -f "$dockerfile" \
        -t "bench/$store:latest" "${args[@]}" "$context" ;;
    buildah)
      buildah_cli "$store" bud --layers --isolation chroot --tls-verify=false \
        -f "$dockerfile" -t "bench/$store:latest" "${args[@]}" "$context" ;;
    *) die "unknown tool '$tool'; use forge, buildkit or buildah" ;;
  esac
}

# reset TOOL STORE [many]: empties the tool's store and build cache, then
# puts the base images in it (untimed), so a cold build starts with the
# bases present and nothing else.
reset() {
  local tool=$1 store=$2 with_many=${3:-} ids
  case $tool in
    forge) forge_fresh_root "$STATE/forge/$store" "$with_many" ;;
    buildkit)
      ids=$(docker_cli images -aq)
      if [ -n "$ids" ]; then
        # shellcheck disable=SC2086
        docker_cli rmi -f $ids >/dev/null 2>&1 || true
      fi
      docker_cli builder prune -af >/dev/null
      docker_cli pull -q "$BASE_SMALL" >/dev/null
      if [ "$with_many" = many ]; then docker_cli pull -q "$BASE_MANY" >/dev/null; fi
      if [ "$with_many" = debian ]; then docker_cli pull -q "$BASE_DEBIAN" >/dev/null; fi
      ;;
    buildah)
      buildah_reset "$store"
      buildah_cli "$store" pull -q --tls-verify=false "$BASE_SMALL" >/dev/null
      if [ "$with_many" = many ]; then
        buildah_cli "$store" pull -q --tls-verify=false "$BASE_MANY" >/dev/null
      fi
      if [ "$with_many" = debian ]; then
        buildah_cli "$store" pull -q --tls-verify=false "$BASE_DEBIAN" >/dev/null
      fi
      ;;
  esac
}

# ------------------------------------------------------------------ inputs

app_context() {
  local ctx=$STATE/ctx/app
  if [ "$(cat "$ctx/.count" 2>/dev/null)" != "$CONTEXT_FILES" ]; then
    "$BENCH_DIR/gen-files.sh" "$ctx/files" "$CONTEXT_FILES"
    echo "$CONTEXT_FILES" > "$ctx/.count"
    printf '.count\n' > "$ctx/.dockerignore"
  fi
  echo "$ctx"
}

# A file of SIZE MiB made of /bin/busybox repeated: compressible to about
# half, like typical binaries.
make_busybox_blob() {
  local out=$1 mib=$2
  [ "$(stat -c %s "$out" 2>/dev/null)" = $((mib * 1048576)) ] && return 0
  mkdir -p "$(dirname "$out")"
  : > "$out"
  while [ "$(stat -c %s "$out")" -lt $((mib * 1048576)) ]; do
    cat /bin/busybox >> "$out"
  done
  truncate -s "${mib}M" "$out"
}

# ------------------------------------------------------------------ scenarios

scenario_nochange() {
  local ctx tool run
  ctx=$(app_context)
  for tool in "${TOOLS[@]}"; do
    reset "$tool" nochange
    timed "nochange-$tool-cold" build "$tool" nochange "$DOCKERFILES/nochange.Dockerfile" "$ctx"
    record nochange cold "$tool" 1 "$ELAPSED"
  done
  for run in $(seq 1 "$RUNS"); do
    for tool in $(turn_order "$run" "${TOOLS[@]}"); do
      timed "nochange-$tool-rebuild$run" build "$tool" nochange "$DOCKERFILES/nochange.Dockerfile" "$ctx"
      record nochange rebuild "$tool" "$run" "$ELAPSED"
    done
  done
  for tool in "${TOOLS[@]}"; do reset_away "$tool" nochange; done
}

scenario_full() {
  local ctx tool run
  ctx=$(app_context)
  for run in $(seq 1 "$COLD_RUNS"); do
    for tool in $(turn_order "$run" "${TOOLS[@]}"); do
      reset "$tool" full
      timed "full-$tool-cold$run" build "$tool" full "$DOCKERFILES/full.Dockerfile" "$ctx"
      record full cold "$tool" "$run" "$ELAPSED"
    done
  done
  for run in $(seq 1 "$RUNS"); do
    for tool in $(turn_order "$run" "${TOOLS[@]}"); do
      timed "full-$tool-cached$run" build "$tool" full "$DOCKERFILES/full.Dockerfile" "$ctx"
      record full cached "$tool" "$run" "$ELAPSED"
    done
  done
  # One changed file per run: every tool then rebuilds the COPY and the
  # steps after it once.
  local changed
  changed=$(find "$ctx/files" -type f | LC_ALL=C sort | sed -n 1p)
  for run in $(seq 1 "$RUNS"); do
    echo "changed in run $run of $SESSION" > "$changed"
    for tool in $(turn_order "$run" "${TOOLS[@]}"); do
      timed "full-$tool-onefile$run" build "$tool" full "$DOCKERFILES/full.Dockerfile" "$ctx"
      record full onefile "$tool" "$run" "$ELAPSED"
    done
  done
  check_full_images
  for tool in "${TOOLS[@]}"; do reset_away "$tool" full; done
}

# Logs what the buildah and BuildKit images of `full` contain in /app/count,
# as a check that the tools built the same thing (forge has no `run`).
check_full_images() {
  local tool
  for tool in "${TOOLS[@]}"; do
    case $tool in
      buildkit) log "full: BuildKit image: $(docker_cli run --rm --network none bench/full:latest)" ;;
      buildah) log "full: buildah image: $(buildah_count)" ;;
    esac
  done
}

buildah_count() {
  buildah_cli full from -q --name bench-check bench/full:latest >/dev/null
  buildah_cli full run --isolation chroot bench-check -- cat /app/count
  buildah_cli full rm bench-check >/dev/null
}

scenario_export() {
  local ctx=$STATE/ctx/export tar=$STATE/export/big.tar run tool
  make_busybox_blob "$ctx/big.bin" "$EXPORT_MIB"
  if [ ! -s "$tar" ] || [ "$tar" -ot "$ctx/big.bin" ]; then
    mkdir -p "$(dirname "$tar")"
    tar -C "$ctx" -cf "$tar" big.bin
  fi
  for run in $(seq 1 "$EXPORT_RUNS"); do
    for tool in $(turn_order "$run" forge gzip); do
      if [ "$tool" = forge ]; then
        forge_fresh_root "$STATE/forge/export"
        timed "export-forge$run" build forge export "$DOCKERFILES/export.Dockerfile" "$ctx"
        record export "big.bin layer" forge "$run" "$ELAPSED"
        # The same build again, where the step cache is off but the store
        # already knows the context file's digest.
        timed "export-forge-nocache$run" forge_cli "$STATE/forge/export" build --no-cache \
          --progress plain -f "$DOCKERFILES/export.Dockerfile" -t bench/export:latest \
          --build-arg "BASE=$BASE_SMALL" "$ctx"
        record export "big.bin layer" "forge --no-cache" "$run" "$ELAPSED"
      else
        timed "export-gzip$run" sh -c 'gzip -6 -c "$1" > /dev/null' gzip "$tar"
        record export "big.bin layer" "gzip -6" "$run" "$ELAPSED"
      fi
    done
  done
  rm -rf "$STATE/forge/export"
}

scenario_snapshot() {
  local ctx=$STATE/ctx/empty tool run pair base
  mkdir -p "$ctx"
  local pairs=()
  for tool in "${TOOLS[@]}"; do
    reset "$tool" snapshot many
    pairs+=("$tool/busybox" "$tool/busybox-many")
  done

  # A first build over each base is left out: it unpacks the base, which
  # happens once per base and not per step.
  for pair in "${pairs[@]}"; do
    snapshot_build "${pair%/*}" "${pair#*/}" warm "snapshot-${pair/\//-}-warm"
  done
  for run in $(seq 1 $((RUNS * 2))); do
    for pair in $(turn_order "$run" "${pairs[@]}"); do
      tool=${pair%/*}
      base=${pair#*/}
      snapshot_build "$tool" "$base" "$SESSION-$run" "snapshot-$tool-$base$run"
      record snapshot "$base" "$tool" "$run" "$ELAPSED"
    done
  done
  for tool in "${TOOLS[@]}"; do reset_away "$tool" snapshot; done
}

snapshot_build() {
  local tool=$1 base=$2 bust=$3 logname=$4 ref=$BASE_SMALL
  [ "$base" = busybox-many ] && ref=$BASE_MANY
  # Both bases build in one store under the same tag, so each build also
  # moves the tag, as a real rebuild does.
  timed "$logname" build "$tool" snapshot "$DOCKERFILES/snapshot.Dockerfile" "$STATE/ctx/empty" \
    "BASE=$ref" "BUST=$bust"
}

scenario_push() {
  if ! "$FORGE" push --help >/dev/null 2>&1; then
    log "push: $FORGE has no push command; scenario skipped"
    return 0
  fi
  local ctx=$STATE/ctx/push run tool target layout=$STATE/push/oci
  if [ "$(stat -c %s "$ctx/blob.bin" 2>/dev/null)" != $((PUSH_MIB * 1048576)) ]; then
    mkdir -p "$ctx"
    head -c $((PUSH_MIB * 1048576)) /dev/urandom > "$ctx/blob.bin"
  fi

  # The images to push, built once and untimed. skopeo copies from an OCI
  # layout, whose blobs are already compressed, as forge's are.
  reset forge push
  timed push-forge-build build forge push "$DOCKERFILES/push.Dockerfile" "$ctx"
  reset buildah push
  timed push-buildah-build build buildah push "$DOCKERFILES/push.Dockerfile" "$ctx"
  rm -rf "$layout"
  mkdir -p "$layout"
  timed push-skopeo-layout buildah_cli push push bench/push:latest "oci:$layout:push"

  for run in $(seq 1 "$RUNS"); do
    for tool in $(turn_order "$run" forge buildah skopeo); do
      # Each tool pushes to an empty registry, so the first push uploads
      # every blob and the second finds them all present.
      registry_stop "$STATE/push-registry"
      rm -rf "$STATE/push-registry"
      registry_start "$STATE/push-registry" "$PUSH_PORT"
      target=127.0.0.1:$PUSH_PORT/bench/push-$tool:latest
      timed "push-$tool-first$run" push_image "$tool" "$target" "$layout"
      record push first "$tool" "$run" "$ELAPSED"
      timed "push-$tool-again$run" push_image "$tool" "$target" "$layout"
      record push again "$tool" "$run" "$ELAPSED"
    done
  done
  registry_stop "$STATE/push-registry"
  rm -rf "$STATE/push-registry" "$layout"
  reset_away forge push
  reset_away buildah push
}

# Prints the seconds between the apt-start and apt-end lines that the
# multistage Dockerfile's apt step writes to LOG: the time of apt-get
# itself inside the tool's sandbox.
apt_seconds() {
  local log=$1 start end
  start=$(grep -o 'apt-start [0-9.]*' "$log" | tail -n 1 | cut -d' ' -f2)
  end=$(grep -o 'apt-end [0-9.]*' "$log" | tail -n 1 | cut -d' ' -f2)
  [ -n "$start" ] && [ -n "$end" ] || die "no apt-start and apt-end lines in $log"
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }'
}

scenario_multistage() {
  local ctx=$STATE/ctx/multistage tool run cold_runs=${BENCH_COLD_RUNS:-2}
  # apt-get needs the network. dockerd runs without a bridge, so BuildKit
  # gets the host's network, as forge and buildah's chroot isolation do.
  BUILDKIT_NETWORK=host

  skopeo inspect --tls-verify=false "docker://$BASE_DEBIAN" >/dev/null 2>&1 ||
    die "multistage: $BASE_DEBIAN is missing; run bench/setup.sh debian first"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp "$REPO_DIR/examples/multistage/hello.c" "$ctx/"

  for run in $(seq 1 "$cold_runs"); do
    for tool in $(turn_order "$run" "${TOOLS[@]}"); do
      reset "$tool" multistage debian
      timed "multistage-$tool-cold$run" build "$tool" multistage \
        "$DOCKERFILES/multistage.Dockerfile" "$ctx" "DEBIAN=$BASE_DEBIAN"
      record multistage cold "$tool" "$run" "$ELAPSED"
      record multistage cold-apt "$tool" "$run" \
        "$(apt_seconds "$LOGS/multistage-$tool-cold$run.log")"
    done
  done

  for run in $(seq 1 "$RUNS"); do
    for tool in $(turn_order "$run" "${TOOLS[@]}"); do
      timed "multistage-$tool-cached$run" build "$tool" multistage \
        "$DOCKERFILES/multistage.Dockerfile" "$ctx" "DEBIAN=$BASE_DEBIAN"
      record multistage cached "$tool" "$run" "$ELAPSED"
    done
  done

  # One edit of hello.c per run, then every tool rebuilds once.
  for run in $(seq 1 "$RUNS"); do
    printf '/* run %s of %s */\n' "$run" "$SESSION" >> "$ctx/hello.c"
    for tool in $(turn_order "$run" "${TOOLS[@]}"); do
      timed "multistage-$tool-onefile$run" build "$tool" multistage \
        "$DOCKERFILES/multistage.Dockerfile" "$ctx" "DEBIAN=$BASE_DEBIAN"
      record multistage onefile "$tool" "$run" "$ELAPSED"
    done
  done

  for tool in "${TOOLS[@]}"; do reset_away "$tool" multistage; done
  BUILDKIT_NETWORK=none
}

push_image() {
  local tool=$1 target=$2 layout=$3
  case $tool in
    forge) forge_cli "$STATE/forge/push" push bench/push:latest "$target" ;;
    buildah) buildah_cli push push --tls-verify=false bench/push:latest "docker://$target" ;;
    skopeo) skopeo copy --dest-tls-verify=false "oci:$layout:push" "docker://$target" ;;
  esac
}

# Frees a scenario's store once its numbers are taken.
reset_away() {
  local tool=$1 store=$2
  case $tool in
    forge) rm -rf "$STATE/forge/$store" ;;
    buildah) buildah_reset "$store" ;;
    buildkit) : ;;
  esac
}

# ------------------------------------------------------------------ main

describe_machine() {
  {
    echo "session: $SESSION"
    echo "kernel: $(uname -r)"
    echo "cpus: $(nproc) ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo))"
    echo "memory: $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "disk: $(df -hT "$STATE" | awk 'NR == 2 { print $2 " on " $1 ", " $3 " total" }')"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "forge: $("$FORGE" --version | head -n 1)"
    echo "buildah: $(buildah --version)"
    echo "docker: $("$DOCKER_CLI" --version); BuildKit in dockerd $(dockerd --version | awk '{ print $3 }' | tr -d ,)"
    echo "skopeo: $(skopeo --version)"
    echo "gzip: $(gzip --version | head -n 1)"
    echo "runs: $RUNS (cold runs in full: $COLD_RUNS, runs of export: $EXPORT_RUNS); tools: ${TOOLS[*]}"
  } > "$RESULTS/$SESSION.env"
  cat "$RESULTS/$SESSION.env" >&2
}

require_root
[ -x "$FORGE" ] || die "no forge binary at $FORGE; run: cargo build --release -p forge-cli, or set FORGE"
curl -fsS -o /dev/null "http://$REG/v2/" || die "no registry responds on $REG; run bench/setup.sh first"
case " ${TOOLS[*]} " in
  *" buildkit "*) docker_cli version >/dev/null 2>&1 || die "dockerd does not respond on $DOCKER_SOCK; run bench/setup.sh first" ;;
esac

SCENARIOS=("$@")
[ ${#SCENARIOS[@]} = 0 ] && SCENARIOS=(nochange export snapshot full push multistage)
for scenario in "${SCENARIOS[@]}"; do
  declare -F "scenario_$scenario" >/dev/null ||
    die "unknown scenario '$scenario'; use nochange, export, snapshot, full, push or multistage"
done

mkdir -p "$RESULTS" "$LOGS"
printf 'scenario\tcase\ttool\trun\tseconds\n' > "$TSV"
describe_machine
for scenario in "${SCENARIOS[@]}"; do
  log "scenario $scenario"
  "scenario_$scenario"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RESULTS/$SESSION.env"
python3 "$BENCH_DIR/summary.py" "$TSV" | tee "$RESULTS/$SESSION.md"
log "raw times: $TSV; logs: $LOGS"
