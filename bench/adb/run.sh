#!/usr/bin/env bash
# ADB benchmark: the same 1 KiB JSON values under the same keys in hyperbee@2 on
# hypercore@11.37.1 (as shipped, and with an fsync added), SQLite in WAL mode
# (synchronous=FULL and NORMAL) and ADB; every row says how durable its writes are. See
# bench/README.md.
#
# Environment:
#   BENCH_RUNS=3            runs of every system, interleaved; the table shows the median
#   BENCH_SINGLE=2000       writes of `single` (and `bytes`)
#   BENCH_CONCURRENT=10000  writes of `concurrent32`, shared by the 32 writers
#   BENCH_BATCHES=100       batches of `batch100`
#   BENCH_RECORDS=100000    records prefilled (untimed) for `get` and `scan`
#   BENCH_GETS=100000       random gets of `get`
#   BENCH_MAX_SECONDS=10    any timed loop stops after this long (the row says "cut")
#   BENCH_SYSTEMS           a subset of: hyperbee hyperbee-fsync sqlite-full sqlite-normal adb
#   BENCH_WORKLOADS         a subset of: single bytes concurrent32 batch100 get scan
#   BENCH_STRICT=0          1: exit 1 if a target is missed
#   BENCH_KEEP=0            1: keep the temporary directory (rows, stderr of each run)
#   BENCH_BIN               use this atek-data-bench instead of building one
#   TMPDIR                  where the stores are written (the disk measured)
#   CARGO_TARGET_DIR        honoured, as by cargo
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../lib/data.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/data.sh"
data_init adb
HERE=$BENCH_DIR/adb
ALL_SYSTEMS="hyperbee hyperbee-fsync sqlite-full sqlite-normal adb"
ALL_WORKLOADS=single,bytes,concurrent32,batch100,get,scan
# Reads do not depend on when writes are synced: the fsync variant only writes.
WRITE_WORKLOADS=single,bytes,concurrent32,batch100
SYSTEMS=${BENCH_SYSTEMS:-$ALL_SYSTEMS}
for s in ${SYSTEMS//,/ }; do in_list "$s" "$ALL_SYSTEMS" || die "unknown system in BENCH_SYSTEMS: $s"; done
WANTED=${BENCH_WORKLOADS:-}
for w in ${WANTED//,/ }; do in_list "$w" "$ALL_WORKLOADS" || die "unknown workload in BENCH_WORKLOADS: $w"; done

ensure_node
npm_install "$HERE"
build_bench
make_work

# measure SYSTEM RUN: one run of SYSTEM's workloads.
measure() {
	local system=$1 run=$2 workloads
	if [[ $system == hyperbee-fsync ]]; then
		workloads=$(workloads_of "$WRITE_WORKLOADS")
	else
		workloads=$(workloads_of "$ALL_WORKLOADS")
	fi
	[[ -n $workloads ]] || return 0
	case $system in
	hyperbee) run_system "$system" "$run" node "$HERE/hyperbee.mjs" --fsync 0 --workload "$workloads" "${COUNTS[@]}" ;;
	hyperbee-fsync) run_system "$system" "$run" node "$HERE/hyperbee.mjs" --fsync 1 --workload "$workloads" "${COUNTS[@]}" ;;
	sqlite-full) run_system "$system" "$run" "$BENCH_BIN" sqlite --synchronous full --workload "$workloads" "${COUNTS[@]}" ;;
	sqlite-normal) run_system "$system" "$run" "$BENCH_BIN" sqlite --synchronous normal --workload "$workloads" "${COUNTS[@]}" ;;
	adb) run_system "$system" "$run" "$BENCH_BIN" adb --workload "$workloads" "${COUNTS[@]}" ;;
	esac
}

measure_runs

report_summary \
	node "$(node --version)" \
	disk_dir "$WORK/stores" \
	single "$BENCH_SINGLE" concurrent "$BENCH_CONCURRENT" batches "$BENCH_BATCHES" \
	records "$BENCH_RECORDS" gets "$BENCH_GETS" max_seconds "$BENCH_MAX_SECONDS"
