#!/usr/bin/env bash
# Log benchmark: the same 1 KiB entries appended to hypercore@11.37.1 (as shipped, and with
# an fsync added) and to atek-log's file log; every row says how durable its appends are.
# The `disk` row does only the log file's pwrite + fdatasync of the same frames (single and
# batch100), the disk's ceiling measured in the same run.
# Also opening a log of 1M entries, warm and cold, and verified replication of a whole log
# over loopback TCP (1 KiB and 64 KiB entries). See bench/README.md.
#
# Environment:
#   BENCH_RUNS=3              runs of every system, interleaved; the table shows the median
#   BENCH_SINGLE=2000         appends of `single` (and `bytes`)
#   BENCH_CONCURRENT=10000    appends of `concurrent32`, shared by the 32 writers
#   BENCH_BATCHES=100         batches of `batch100`
#   BENCH_OPEN_ENTRIES=1000000  entries of the log `open` reopens (0: skip `open`)
#   BENCH_OPEN_REPEATS=3      timed opens, warm and cold each, per run
#   BENCH_REPLICATE_MIB=64    MiB of entries of the log replicate1k/replicate64k replicate (0: skip)
#   BENCH_MAX_SECONDS=10      any timed loop stops after this long (the row says "cut")
#   BENCH_SYSTEMS             a subset of: hypercore hypercore-fsync atek-log disk
#   BENCH_WORKLOADS           a subset of: single bytes concurrent32 batch100 open replicate1k replicate64k
#   BENCH_STRICT=0            1: exit 1 if a target is missed (or not measured)
#   BENCH_KEEP=0              1: keep the temporary directory (rows, stderr of each run)
#   BENCH_BIN                 use this atek-data-bench instead of building one
#   TMPDIR                    where the logs are written (the disk measured)
#   CARGO_TARGET_DIR          honoured, as by cargo
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../lib/data.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/data.sh"
data_init log
HERE=$BENCH_DIR/log
BENCH_OPEN_ENTRIES=${BENCH_OPEN_ENTRIES:-1000000}
BENCH_OPEN_REPEATS=${BENCH_OPEN_REPEATS:-3}
BENCH_REPLICATE_MIB=${BENCH_REPLICATE_MIB:-64}
for v in BENCH_OPEN_ENTRIES BENCH_OPEN_REPEATS BENCH_REPLICATE_MIB; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
ALL_SYSTEMS="hypercore hypercore-fsync atek-log disk"
# Opening does not depend on when appends are synced, and the fsync variant syncs the WAL of
# its own appends, not a clone's: hypercore-fsync runs only the write workloads.
WRITE_WORKLOADS=single,bytes,concurrent32,batch100
# The disk alone writes atek-log's frames of one awaited append and of a batch of 100.
DISK_WORKLOADS=single,batch100
ALL_WORKLOADS=$WRITE_WORKLOADS
if ((BENCH_OPEN_ENTRIES > 0)); then ALL_WORKLOADS+=,open; fi
if ((BENCH_REPLICATE_MIB > 0)); then ALL_WORKLOADS+=,replicate1k,replicate64k; fi
SYSTEMS=${BENCH_SYSTEMS:-$ALL_SYSTEMS}
WANTED=${BENCH_WORKLOADS:-}
for s in ${SYSTEMS//,/ }; do in_list "$s" "$ALL_SYSTEMS" || die "unknown system in BENCH_SYSTEMS: $s"; done
for w in ${WANTED//,/ }; do in_list "$w" "$ALL_WORKLOADS" || die "unknown workload in BENCH_WORKLOADS: $w"; done
LOG_FLAGS=(--open-entries "$BENCH_OPEN_ENTRIES" --open-repeats "$BENCH_OPEN_REPEATS"
	--replicate-mib "$BENCH_REPLICATE_MIB")

ensure_node
npm_install "$HERE"
build_bench
make_work

# The rows a workload list gives (`open` gives two).
row_names() { local w=$1; echo "${w/open/open_warm,open_cold}"; }

# ---------------------------------------------------------------------------------------
# ATEK-LOG: the rows of atek-log's file log, from `atek-data-bench log`: the flags and rows
# of `atek-data-bench adb`, plus --open-entries/--open-repeats/--replicate-mib and the rows
# open_warm/open_cold (which carry `records`), replicate1k and replicate64k. A binary that
# cannot measure it (status 3, as builds before `log` existed gave; see BENCH_BIN) gets
# every row printed as "not measured: <its last line on stderr>".
measure_atek_log() {
	local run=$1 workloads=$2 rc=0
	run_once atek-log "$run" "$BENCH_BIN" log --workload "$workloads" "${COUNTS[@]}" "${LOG_FLAGS[@]}" || rc=$?
	if ((rc == 3)); then
		not_measured atek-log "$run" "$(row_names "$workloads")" \
			"$(tail -n 1 "$WORK/logs/atek-log-r$run.err")"
	elif ((rc != 0)); then
		tail -n 30 "$WORK/logs/atek-log-r$run.err" >&2
		die "atek-log (run $run) failed with status $rc"
	else
		python3 "$REPORT" line "$WORK/rows/atek-log-r$run.jsonl"
	fi
}

# DISK: the disk alone, `atek-data-bench disk` (bench/data/src/disk.rs): pwrite of the frame
# atek-log writes for one 1 KiB entry (single) or 100 (batch100) at the end of a file
# preallocated as atek-log's, then fdatasync. A binary without the subcommand (BENCH_BIN
# built before it) gets its rows printed as "not measured".
measure_disk() {
	local run=$1 workloads=$2 rc=0
	run_once disk "$run" "$BENCH_BIN" disk --workload "$workloads" "${COUNTS[@]}" || rc=$?
	if ((rc == 2)) && grep -q "unrecognized subcommand" "$WORK/logs/disk-r$run.err"; then
		not_measured disk "$run" "$workloads" "this atek-data-bench has no 'disk' subcommand"
	elif ((rc != 0)); then
		tail -n 30 "$WORK/logs/disk-r$run.err" >&2
		die "disk (run $run) failed with status $rc"
	else
		python3 "$REPORT" line "$WORK/rows/disk-r$run.jsonl"
	fi
}
# ---------------------------------------------------------------------------------------

# measure SYSTEM RUN: one run of SYSTEM's workloads.
measure() {
	local system=$1 run=$2 workloads
	if [[ $system == hypercore-fsync ]]; then
		workloads=$(workloads_of "$WRITE_WORKLOADS")
	elif [[ $system == disk ]]; then
		workloads=$(workloads_of "$DISK_WORKLOADS")
	else
		workloads=$(workloads_of "$ALL_WORKLOADS")
	fi
	[[ -n $workloads ]] || return 0
	case $system in
	hypercore) run_system "$system" "$run" node "$HERE/hypercore.mjs" --fsync 0 --workload "$workloads" "${COUNTS[@]}" "${LOG_FLAGS[@]}" ;;
	hypercore-fsync) run_system "$system" "$run" node "$HERE/hypercore.mjs" --fsync 1 --workload "$workloads" "${COUNTS[@]}" ;;
	atek-log) measure_atek_log "$run" "$workloads" ;;
	disk) measure_disk "$run" "$workloads" ;;
	esac
}

measure_runs

report_summary \
	node "$(node --version)" \
	disk_dir "$WORK/stores" \
	single "$BENCH_SINGLE" concurrent "$BENCH_CONCURRENT" batches "$BENCH_BATCHES" \
	open_entries "$BENCH_OPEN_ENTRIES" open_repeats "$BENCH_OPEN_REPEATS" \
	replicate_mib "$BENCH_REPLICATE_MIB" max_seconds "$BENCH_MAX_SECONDS"
