# shellcheck shell=bash
# What bench/adb/run.sh and bench/log/run.sh share; sourced by them, after
# `set -euo pipefail`. See bench/README.md.
#
# data_init NAME reads the knobs both take (BENCH_RUNS and the counts), ensure_node and
# npm_install get Node.js and the benchmark's npm packages, build_bench builds
# atek-data-bench (release), make_work creates the temporary directory and the traps that
# stop what we started and remove it on exit, run_system runs one system's workloads once
# into WORK/rows (run_once without the checks), not_measured records rows that cannot be measured yet, and
# report_summary hands the rows to NAME/report.py.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

# shellcheck source-path=SCRIPTDIR source=log.sh
source "$BENCH_DIR/lib/log.sh"

# data_init NAME: REPORT and OUT of the benchmark NAME; BENCH_RUNS and the counts, with
# their defaults, checked; COUNTS, the flags every system takes.
data_init() {
	BENCH_NAME=$1
	REPORT=$BENCH_DIR/$BENCH_NAME/report.py
	OUT=$BENCH_DIR/results/$BENCH_NAME.json
	BENCH_RUNS=${BENCH_RUNS:-3}
	BENCH_SINGLE=${BENCH_SINGLE:-2000}
	BENCH_CONCURRENT=${BENCH_CONCURRENT:-10000}
	BENCH_BATCHES=${BENCH_BATCHES:-100}
	BENCH_RECORDS=${BENCH_RECORDS:-100000}
	BENCH_GETS=${BENCH_GETS:-100000}
	BENCH_MAX_SECONDS=${BENCH_MAX_SECONDS:-10}
	local v
	for v in BENCH_RUNS BENCH_SINGLE BENCH_CONCURRENT BENCH_BATCHES BENCH_RECORDS BENCH_GETS BENCH_MAX_SECONDS; do
		[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
	done
	((BENCH_RUNS > 0 && BENCH_SINGLE > 0 && BENCH_RECORDS > 0 && BENCH_MAX_SECONDS > 0)) ||
		die "BENCH_RUNS, BENCH_SINGLE, BENCH_RECORDS and BENCH_MAX_SECONDS must be positive"
	# shellcheck disable=SC2034 # used by the run scripts
	COUNTS=(--single "$BENCH_SINGLE" --concurrent "$BENCH_CONCURRENT" --batches "$BENCH_BATCHES"
		--records "$BENCH_RECORDS" --gets "$BENCH_GETS" --max-seconds "$BENCH_MAX_SECONDS")
}

# ensure_node: node (18 or later) and npm, installed with apt-get if missing and we may.
ensure_node() {
	command -v python3 >/dev/null || die "python3 is needed"
	if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
		if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
			die "node and npm are needed; install them (e.g. apt-get install -y nodejs npm)"
		fi
		log "installing nodejs and npm"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y -q nodejs npm >&2 ||
			{ apt-get update -q >&2 && apt-get install -y -q nodejs npm >&2; } ||
			die "could not install nodejs and npm"
	fi
	local major
	major=$(node -p 'process.versions.node.split(".")[0]')
	((major >= 18)) || die "node $(node --version) is too old: the benchmarks need 18 or later"
}

# npm_install DIR: DIR's packages exactly as its package-lock.json says, into
# DIR/node_modules (gitignored); nothing is done if they are already there.
npm_install() {
	local dir=$1
	[[ -f $dir/package-lock.json ]] || die "$dir/package-lock.json is missing"
	if [[ -d $dir/node_modules ]] && npm ls --prefix "$dir" --all >/dev/null 2>&1; then
		return 0
	fi
	log "npm ci in ${dir#"$ROOT"/}"
	npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2 || die "npm ci failed in $dir"
}

# build_bench: BENCH_BIN, the atek-data-bench binary: built in release mode unless
# BENCH_BIN is set already.
build_bench() {
	if [[ -n ${BENCH_BIN:-} ]]; then
		BENCH_BIN=$(realpath "$BENCH_BIN")
	else
		command -v cargo >/dev/null || die "cargo is needed"
		# A relative CARGO_TARGET_DIR means relative to where we were started.
		if [[ -n ${CARGO_TARGET_DIR:-} && $CARGO_TARGET_DIR != /* ]]; then
			export CARGO_TARGET_DIR=$PWD/$CARGO_TARGET_DIR
		fi
		local target_dir
		log "cargo build --release -p atek-data-bench"
		(cd "$ROOT" && cargo build --release -p atek-data-bench >&2) || die "cargo build failed"
		target_dir=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
			python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
		BENCH_BIN=$target_dir/release/atek-data-bench
	fi
	[[ -x $BENCH_BIN ]] || die "$BENCH_BIN is not an executable"
}

# make_work: the temporary directory WORK (rows/, logs/, stores/) and the cleanup traps.
# The stores live there too: TMPDIR decides which disk is measured.
make_work() { make_work_dir "$BENCH_NAME" rows logs stores; }

# in_list WORD LIST: LIST (words separated by commas or spaces) holds WORD.
in_list() { [[ " ${2//,/ } " == *" $1 "* ]]; }

# workloads_of WANTED: the workloads of WANTED (comma-separated) that BENCH_WORKLOADS
# asks for (all of them if it is unset), comma-separated; empty if none.
workloads_of() {
	local w out=()
	for w in ${1//,/ }; do
		if [[ -z ${BENCH_WORKLOADS:-} ]] || in_list "$w" "$BENCH_WORKLOADS"; then out+=("$w"); fi
	done
	local IFS=,
	echo "${out[*]}"
}

# run_once SYSTEM RUN COMMAND...: runs COMMAND --dir STORES (a fresh folder) once, its rows
# into WORK/rows/SYSTEM-rRUN.jsonl and its stderr into WORK/logs/SYSTEM-rRUN.err; removes the
# stores; returns COMMAND's exit status.
run_once() {
	local system=$1 run=$2 stores rc=0
	shift 2
	stores=$WORK/stores/$system-r$run
	# In the background and waited for, so that Ctrl-C runs our trap at once.
	"$@" --dir "$stores" >"$WORK/rows/$system-r$run.jsonl" 2>"$WORK/logs/$system-r$run.err" &
	CHILD_PID=$!
	wait "$CHILD_PID" || rc=$?
	CHILD_PID=''
	rm -rf "$stores"
	return "$rc"
}

# run_system SYSTEM RUN COMMAND...: run_once, then the progress line; a failure stops the
# benchmark with the command's stderr.
run_system() {
	local rc=0
	run_once "$@" || rc=$?
	if ((rc != 0)); then
		tail -n 30 "$WORK/logs/$1-r$2.err" >&2
		die "$1 (run $2) failed with status $rc: ${*:3}"
	fi
	python3 "$REPORT" line "$WORK/rows/$1-r$2.jsonl"
}

# not_measured SYSTEM RUN WORKLOADS WHY: a row per workload (comma-separated) saying that
# SYSTEM was not measured, and why.
not_measured() {
	python3 - "$WORK/rows/$1-r$2.jsonl" "$1" "$3" "$4" <<'PY'
import json, sys
path, system, workloads, why = sys.argv[1:]
with open(path, "w") as f:
    for w in filter(None, workloads.split(",")):
        f.write(json.dumps({"system": system, "workload": w, "not_measured": why}) + "\n")
PY
	python3 "$REPORT" line "$WORK/rows/$1-r$2.jsonl"
}

# measure_runs: BENCH_RUNS runs of every system in SYSTEMS, interleaved, the order rotating
# from run to run; each is the calling script's `measure SYSTEM RUN`.
measure_runs() {
	local systems run k
	# shellcheck disable=SC2153 # SYSTEMS is the script's, set before this is called
	read -r -a systems <<<"${SYSTEMS//,/ }"
	log "measuring: ${BENCH_RUNS} runs x ${#systems[@]} systems (${systems[*]}), in $WORK"
	for ((run = 1; run <= BENCH_RUNS; run++)); do
		log "run $run of $BENCH_RUNS"
		for k in $(rotate "${#systems[@]}" "$run"); do
			measure "${systems[k]}" "$run"
		done
	done
}

# rotate N RUN: the indexes 0..N-1 starting at (RUN-1) mod N, so no system always goes first.
rotate() {
	local n=$1 run=$2 k
	for ((k = 0; k < n; k++)); do echo $(((k + run - 1) % n)); done
}

# report_summary KEY VALUE...: report.py's table, targets and result file, with these
# facts (a JSON object in BENCH_META).
report_summary() {
	BENCH_META=$(python3 -c 'import json, sys; a = sys.argv[1:]; print(json.dumps(dict(zip(a[::2], a[1::2]))))' "$@")
	export BENCH_META
	python3 "$REPORT" summary "$WORK/rows" "$OUT"
}
