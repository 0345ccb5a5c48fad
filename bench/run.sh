#!/usr/bin/env bash
# Benchmarks pkic against a hand-written openssl script, cfssl and kubectl on the
# same Kubernetes PKI workload, and regenerates the tables in BENCHMARKS.md.
#
# The workload: a Server, a Client and a Worker CA, the apiserver serving
# certificate, the admin and apiserver-kubelet-client certificates, and N kubelet
# client certificates with one kubeconfig each, for N = 10, 100 and 1000 (and 10000
# for pkic alone), with ECDSA P-256 keys and with RSA-2048 keys. See
# bench/manifest.sh and the *-workload.sh scripts beside this file.
#
# Installs the missing peers with apt-get (needs root then), builds pkic with
# `cargo build --release`, and runs every case under `/usr/bin/time -v`. Each case
# runs BENCH_RUNS times (3 by default) and reports the median. A case whose first
# run takes longer than BENCH_SLOW_SECONDS (60 by default) runs once.
#
# Environment:
#   BENCH_QUICK=1           smoke test: N = 10 and 100 only, one run per case, and
#                           BENCHMARKS.md is left alone
#   BENCH_RUNS=N            runs per case (default 3, or 1 with BENCH_QUICK=1)
#   BENCH_SLOW_SECONDS=S    a case whose first run takes longer runs once (default 60)
#   BENCH_KEYGEN_LEAVES=K   leaf certificates of the key-generation probe (default 100)
#
# Writes bench/results/runs.tsv (one line per run), bench/results/machine.txt,
# bench/results/summary.md and the stderr of every run under bench/results/logs/.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

quick=${BENCH_QUICK:-0}
if [[ $quick == 1 ]]; then
  runs=${BENCH_RUNS:-1}
  sizes=(10 100)
  pkic_only_sizes=()
  keygen_leaves=${BENCH_KEYGEN_LEAVES:-20}
else
  runs=${BENCH_RUNS:-3}
  sizes=(10 100 1000)
  pkic_only_sizes=(10000)
  keygen_leaves=${BENCH_KEYGEN_LEAVES:-100}
fi
slow_seconds=${BENCH_SLOW_SECONDS:-60}
algorithms=(ecdsa-p256 rsa-2048)
# The reference kubectl run is slow (four processes per kubeconfig), so it runs at
# this size only.
kubectl_size=100

results=$root/bench/results
work=$results/work
logs=$results/logs
graveyard=$work/retired

say() {
  echo "bench: $*" >&2
}

# Installs the Debian packages of the peers that are not on PATH.
install_peers() {
  local programs=(openssl cfssl cfssljson python3 kubectl)
  local -A package_of=(
    [openssl]=openssl
    [cfssl]=golang-cfssl
    [cfssljson]=golang-cfssl
    [python3]=python3
    [kubectl]=kubernetes-client
  )
  local missing=() program

  for program in "${programs[@]}"; do
    if ! command -v "$program" >/dev/null 2>&1; then
      missing+=("${package_of[$program]}")
    fi
  done
  # GNU time: the shell keyword `time` has no -v, so the program must be there.
  if [[ ! -x /usr/bin/time ]]; then
    missing+=(time)
  fi
  if ((${#missing[@]} == 0)); then
    return
  fi

  local packages
  packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  if ((EUID != 0)); then
    say "error: missing packages $packages; run as root, or install them first"
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    say "error: apt-get not found; install $packages (Debian 12 names) by hand"
    exit 1
  fi

  say "installing $packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # shellcheck disable=SC2086 # one word per package
  apt-get install -y -q --no-install-recommends $packages

  for program in "${programs[@]}"; do
    if ! command -v "$program" >/dev/null 2>&1; then
      say "error: $program is still not on PATH after installing $packages"
      exit 1
    fi
  done
}

# Prints the first line of a program's version output, or "unknown".
version_of() {
  local line
  line=$("$@" 2>&1 | head -n 1) || true
  echo "${line:-unknown}"
}

write_machine_info() {
  local cpu memory_kib
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  memory_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
  {
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'command\t%s\n' "$([[ $quick == 1 ]] && echo 'BENCH_QUICK=1 ')bash bench/run.sh"
    printf 'quick\t%s\n' "$quick"
    printf 'runs\t%s\n' "$runs"
    printf 'slow_seconds\t%s\n' "$slow_seconds"
    printf 'keygen_leaves\t%s\n' "$keygen_leaves"
    printf 'nproc\t%s\n' "$(nproc)"
    printf 'cpu\t%s\n' "${cpu:-unknown}"
    printf 'memory_gib\t%s\n' "$(awk -v k="$memory_kib" 'BEGIN { printf "%.1f", k / 1048576 }')"
    printf 'kernel\t%s\n' "$(uname -r)"
    printf 'filesystem\t%s\n' "$(df -T "$results" | awk 'NR == 2 { print $2 }')"
    printf 'pkic\t%s\n' "$(version_of "$pkic" --version), commit $(git describe --always --dirty 2>/dev/null || echo unknown)"
    printf 'openssl\t%s\n' "$(version_of openssl version)"
    printf 'cfssl\t%s\n' "cfssl $(version_of cfssl version | sed 's/^Version: //')"
    printf 'kubectl\t%s\n' "kubectl $(version_of kubectl version --client | sed 's/^Client Version: //')"
    printf 'python3\t%s\n' "$(version_of "$python" --version)"
    printf 'load_start\t%s\n' "$(cut -d ' ' -f 1-3 /proc/loadavg)"
  } >"$results/machine.txt"
}

# Prints the elapsed seconds between two $EPOCHREALTIME values.
elapsed() {
  local microseconds=$((${2/./} - ${1/./}))
  printf '%d.%06d' $((microseconds / 1000000)) $((microseconds % 1000000))
}

# Prints the files under a directory, leaving out pkic's backups.
count_files() {
  if [[ -d $1 ]]; then
    find "$1" -path "$1/.backup" -prune -o -type f -print | wc -l
  else
    echo 0
  fi
}

case_number=0
case_total=0

# measure TOOL ALGORITHM N EXPECTED_EXIT SETUP OUT_DIR -- COMMAND...
#
# Runs COMMAND under /usr/bin/time -v up to $runs times, calling the function SETUP
# with the run number before each run, untimed. Appends one line per run to
# runs.tsv. Wall time comes from $EPOCHREALTIME around the run (microseconds), CPU
# time and peak RSS from /usr/bin/time, and the 1-minute load average at the start
# of the run from /proc/loadavg. Stops after the first run when it took
# longer than $slow_seconds. Exits when COMMAND's exit status is not EXPECTED_EXIT.
measure() {
  local tool=$1 algorithm=$2 n=$3 expected=$4 setup=$5 out_dir=$6
  shift 7
  local log="$logs/$tool-$algorithm-$n.log"
  local usage="$work/time.txt"
  local run start end status wall user system rss files load
  case_number=$((case_number + 1))
  for ((run = 1; run <= runs; run++)); do
    "$setup" "$run"
    sync
    echo "--- run $run: $*" >>"$log"
    load=$(cut -d ' ' -f 1 /proc/loadavg)
    status=0
    start=$EPOCHREALTIME
    /usr/bin/time -v -o "$usage" "$@" >/dev/null 2>>"$log" || status=$?
    end=$EPOCHREALTIME
    if ((status != expected)); then
      say "error: $tool $algorithm N=$n run $run exited $status, expected $expected; see $log"
      tail -n 5 "$log" >&2
      exit 1
    fi
    wall=$(elapsed "$start" "$end")
    user=$(awk -F': ' '/User time \(seconds\)/ { print $2 }' "$usage")
    system=$(awk -F': ' '/System time \(seconds\)/ { print $2 }' "$usage")
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$usage")
    files=$(count_files "$out_dir")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
      "$tool" "$algorithm" "$n" "$run" "$wall" "$user" "$system" "$rss" "$files" "$load" \
      >>"$results/runs.tsv"
    say "[$case_number/$case_total] $tool $algorithm N=$n run $run/$runs: ${wall%????} s," \
      "$((rss / 1024)) MiB, $files files"
    if awk -v w="$wall" -v s="$slow_seconds" 'BEGIN { exit !(w > s) }'; then
      if ((run < runs)); then
        say "  slower than $slow_seconds s: this case runs once"
      fi
      break
    fi
  done
}

# Moves output directories out of the way instead of deleting them. On ext4, a file
# created shortly after thousands were deleted makes the inode allocator skip each
# recently deleted inode (recently_deleted() in fs/ext4/ialloc.c), which here made a
# build of 3013 files take 2.5 s instead of 0.4 s. Nothing is deleted until every
# case has run.
retired=0
retire() {
  local dir
  for dir in "$@"; do
    if [[ -e $dir ]]; then
      retired=$((retired + 1))
      mv "$dir" "$graveyard/$retired"
    fi
  done
}

no_setup() { :; }
clean_out() { retire "$work/out"; }
clean_openssl() { retire "$work/openssl"; }
clean_cfssl() { retire "$work/cfssl"; }
clean_kubectl() { retire "$work/kubectl"; }
clean_floor() { retire "$work/floor"; }
clean_floor_fsync() { retire "$work/floor-fsync"; }

# Odd runs rename one node and even runs rename it back, so that every run changes
# exactly one node: one new key, certificate and kubeconfig, and three stale files
# moved to the backup.
pick_changed_manifest() {
  if (($1 % 2 == 1)); then
    cp "$work/renamed.toml" "$work/changed.toml"
  else
    cp "$work/manifest.toml" "$work/changed.toml"
  fi
}

count_cases() {
  local n algorithm
  case_total=2 # the key-generation probe, ECDSA and RSA
  for algorithm in "${algorithms[@]}"; do
    for n in "${sizes[@]}" "${pkic_only_sizes[@]}"; do
      case_total=$((case_total + 3)) # full build, no-op and one node changed
      if [[ $algorithm == ecdsa-p256 ]]; then
        case_total=$((case_total + 2)) # floor, with and without fsync
      fi
    done
    case_total=$((case_total + 2 * ${#sizes[@]})) # openssl and cfssl
  done
  case_total=$((case_total + 1)) # kubectl
}

# Measures pkic's cost per key at one thread: `pkic plan` on an empty output
# directory issues every key and certificate in memory and writes nothing, so the
# RSA run minus the ECDSA run is the extra cost of RSA keys.
measure_keygen() {
  local algorithm
  mkdir -p "$work/empty"
  for algorithm in "${algorithms[@]}"; do
    bash bench/manifest.sh "$keygen_leaves" "$algorithm" >"$work/keygen-$algorithm.toml"
    RAYON_NUM_THREADS=1 measure keygen "$algorithm" "$keygen_leaves" 4 no_setup "" -- \
      "$pkic" plan -q -m "$work/keygen-$algorithm.toml" -o "$work/empty"
  done
}

# measure_pkic ALGORITHM N: full build, no-op rebuild and one-node-changed rebuild.
measure_pkic() {
  local algorithm=$1 n=$2
  bash bench/manifest.sh "$n" "$algorithm" >"$work/manifest.toml"
  bash bench/manifest.sh "$n" "$algorithm" 1 >"$work/renamed.toml"
  measure pkic "$algorithm" "$n" 0 clean_out "$work/out" -- \
    "$pkic" build -q -m "$work/manifest.toml" -o "$work/out"
  find "$work/out" -type f -printf '%s\t%P\n' >"$work/files.tsv"
  measure pkic-noop "$algorithm" "$n" 0 no_setup "$work/out" -- \
    "$pkic" build -q -m "$work/manifest.toml" -o "$work/out"
  measure pkic-change "$algorithm" "$n" 0 pick_changed_manifest "$work/out" -- \
    "$pkic" build -q -m "$work/changed.toml" -o "$work/out"
  retire "$work/out"
}

# measure_floor N: writes the files of pkic's last full build with python3, plain
# and with an fsync per file.
measure_floor() {
  local n=$1
  measure floor ecdsa-p256 "$n" 0 clean_floor "$work/floor" -- \
    "$python" bench/floor.py "$work/files.tsv" "$work/floor"
  measure floor-fsync ecdsa-p256 "$n" 0 clean_floor_fsync "$work/floor-fsync" -- \
    "$python" bench/floor.py --fsync "$work/files.tsv" "$work/floor-fsync"
  retire "$work/floor" "$work/floor-fsync"
}

measure_peers() {
  local algorithm=$1 n=$2
  measure openssl "$algorithm" "$n" 0 clean_openssl "$work/openssl" -- \
    bash bench/openssl-workload.sh "$n" "$algorithm" "$work/openssl"
  measure cfssl "$algorithm" "$n" 0 clean_cfssl "$work/cfssl" -- \
    bash bench/cfssl-workload.sh "$n" "$algorithm" "$work/cfssl"
  retire "$work/openssl" "$work/cfssl"
}

main() {
  install_peers
  say "building pkic (cargo build --release)"
  cargo build --release --locked --quiet
  local target_dir=${CARGO_TARGET_DIR:-target}
  if [[ $target_dir != /* ]]; then
    target_dir=$root/$target_dir
  fi
  pkic=$target_dir/release/pkic
  # The interpreter itself, not a version manager's shim that would add its own
  # start-up time to the floor.
  python=$(python3 -c 'import sys; print(sys.executable)')

  # The work directory of an earlier run is deleted at the end, with this run's.
  local earlier=
  if [[ -e $work ]]; then
    earlier=$results/earlier-work.$$
    mv "$work" "$earlier"
  fi
  rm -rf "$logs"
  mkdir -p "$work" "$logs" "$graveyard"
  printf 'tool\talgorithm\tn\trun\twall_s\tuser_s\tsystem_s\tmax_rss_kib\tfiles\tload1\n' \
    >"$results/runs.tsv"
  write_machine_info
  count_cases
  say "$case_total cases, up to $runs runs each; progress below, results in bench/results/"

  measure_keygen
  local algorithm n
  for algorithm in "${algorithms[@]}"; do
    for n in "${sizes[@]}" "${pkic_only_sizes[@]}"; do
      measure_pkic "$algorithm" "$n"
      if [[ $algorithm == ecdsa-p256 ]]; then
        measure_floor "$n"
      fi
    done
    for n in "${sizes[@]}"; do
      measure_peers "$algorithm" "$n"
    done
  done
  measure kubectl ecdsa-p256 "$kubectl_size" 0 clean_kubectl "$work/kubectl" -- \
    bash bench/kubectl-workload.sh "$kubectl_size" "$work/kubectl"
  say "deleting the outputs of every case"
  rm -rf "$work" ${earlier:+"$earlier"}
  printf 'load_end\t%s\n' "$(cut -d ' ' -f 1-3 /proc/loadavg)" >>"$results/machine.txt"

  local report_options=()
  if [[ $quick == 1 ]]; then
    report_options+=(--no-document)
  fi
  python3 bench/report.py "${report_options[@]}" "$results" BENCHMARKS.md
  say "done: tables in bench/results/summary.md$([[ $quick == 1 ]] || echo ' and BENCHMARKS.md')"
}

main "$@"
