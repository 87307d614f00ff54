# shellcheck shell=bash
# log and die, for every benchmark script (sourced by common.sh, data.sh and p2p/run.sh),
# and the temporary directory with its cleanup for the scripts that run one child at a time.

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
	printf '[bench] error: %s\n' "$*" >&2
	exit 1
}

# The process being measured, if any: cleanup stops it (with TERM: a child that started
# others stops them when it gets TERM).
CHILD_PID=''

# cleanup: stops CHILD_PID, removes WORK (unless BENCH_KEEP=1), exits with the status.
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	if [[ -n $CHILD_PID ]] && kill -0 "$CHILD_PID" 2>/dev/null; then
		kill -TERM "$CHILD_PID" 2>/dev/null
		wait "$CHILD_PID" 2>/dev/null
	fi
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}

# make_work_dir NAME SUBDIR...: the temporary directory WORK with those subdirectories,
# and the traps that run cleanup. TMPDIR decides where (and so which disk) it is.
make_work_dir() {
	local name=$1 sub
	shift
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/atek-bench-$name.XXXXXX")
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	for sub in "$@"; do mkdir -p "$WORK/$sub"; done
}
