#!/usr/bin/env bash
# P2P benchmark: bind and beam next to a bare iroh stream (their ceiling) and plain TCP (for
# scale), each direct and through a relay on loopback, and the time to connect two nodes
# that are up. Every row is one run of atek-p2p-bench (bench/p2p/src); `beam` runs the real
# `atek beam` twice. See bench/README.md.
#
# Environment:
#   BENCH_RUNS=3            runs of every row, interleaved; the table shows the median
#   BENCH_MIB=1024          MiB each copy moves (tcp, iroh, bind, beam-lib and beam)
#   BENCH_CONNECTS=20       samples of each connect row (a fresh dialing node each)
#   BENCH_ROWS              a subset of the rows, e.g. "iroh:direct,bind:direct" (default: all)
#   BENCH_NETNS=auto        1: run each row in a network namespace of its own that has only
#                           loopback (unshare --net; needs root and `ip`), 0: do not,
#                           auto: when possible
#   BENCH_MAX_SECONDS=300   a row that takes longer fails
#   BENCH_STRICT=0          1: exit 1 if a target is missed (or not measured) or a run failed
#   BENCH_KEEP=0            1: keep the temporary directory (rows, stderr of each run)
#   BENCH_BIN               use this atek-p2p-bench instead of building one
#   ATEK_BIN                use this atek instead of building atek-cli
#   CARGO_TARGET_DIR        honoured, as by cargo
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
HERE=$BENCH_DIR/p2p
REPORT=$HERE/report.py
OUT=$BENCH_DIR/results/p2p.json
# shellcheck source-path=SCRIPTDIR source=../lib/log.sh
source "$BENCH_DIR/lib/log.sh"

BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_MIB=${BENCH_MIB:-1024}
BENCH_CONNECTS=${BENCH_CONNECTS:-20}
BENCH_MAX_SECONDS=${BENCH_MAX_SECONDS:-300}
BENCH_NETNS=${BENCH_NETNS:-auto}
for v in BENCH_RUNS BENCH_MIB BENCH_CONNECTS BENCH_MAX_SECONDS; do
	if ! [[ ${!v} =~ ^[0-9]+$ ]] || ((${!v} == 0)); then
		die "$v must be a positive whole number, not '${!v}'"
	fi
done
ALL_ROWS="tcp:loopback iroh:direct iroh:relay iroh:relay-only bind:direct bind:relay beam-lib:direct beam-lib:relay beam:relay connect:direct connect:relay"
ROWS=${BENCH_ROWS:-$ALL_ROWS}
ROWS=${ROWS//,/ }
for r in $ROWS; do
	[[ " $ALL_ROWS " == *" $r "* ]] || die "unknown row in BENCH_ROWS: $r (rows: $ALL_ROWS)"
done
command -v python3 >/dev/null || die "python3 is needed"

# --- build ----------------------------------------------------------------------------------
# A relative CARGO_TARGET_DIR means relative to where we were started.
if [[ -n ${CARGO_TARGET_DIR:-} && $CARGO_TARGET_DIR != /* ]]; then
	export CARGO_TARGET_DIR=$PWD/$CARGO_TARGET_DIR
fi
target_dir() {
	(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
}
# atek-net skips the relay's certificate check (`--relay-insecure`, NetConfig::loopback) with
# an iroh function that exists only with iroh's test-utils feature. When atek-cli has a
# feature for it (`insecure-relay-tls`), it is built with that feature; otherwise it is built
# together with atek-p2p-bench, whose iroh dependency turns test-utils on for both (a plain
# `cargo build -p atek-cli` does not compile then).
if [[ -z ${BENCH_BIN:-} || -z ${ATEK_BIN:-} ]]; then
	command -v cargo >/dev/null || die "cargo is needed"
fi
NEED_ATEK=0
if [[ -z ${ATEK_BIN:-} && " $ROWS " == *" beam:relay "* ]]; then NEED_ATEK=1; fi
packages=()
if [[ -z ${BENCH_BIN:-} ]]; then packages+=(-p atek-p2p-bench); fi
cli_features=()
if ((NEED_ATEK)); then
	if (cd "$ROOT" && cargo metadata --format-version 1 --no-deps) | python3 -c '
import json, sys
pkgs = json.load(sys.stdin)["packages"]
sys.exit(0 if any(p["name"] == "atek-cli" and "insecure-relay-tls" in p["features"] for p in pkgs) else 1)'; then
		cli_features=(--features atek-cli/insecure-relay-tls)
		log "cargo build --release -p atek-cli --features insecure-relay-tls"
		(cd "$ROOT" && cargo build --release -p atek-cli "${cli_features[@]}" >&2) || die "cargo build failed"
	else
		packages+=(-p atek-cli)
	fi
fi
if ((${#packages[@]} > 0)); then
	log "cargo build --release ${packages[*]}"
	(cd "$ROOT" && cargo build --release "${packages[@]}" >&2) || die "cargo build failed"
fi
TARGET_DIR=''
if [[ -z ${BENCH_BIN:-} ]] || ((NEED_ATEK)); then TARGET_DIR=$(target_dir); fi
BENCH_BIN=${BENCH_BIN:-$TARGET_DIR/release/atek-p2p-bench}
if ((NEED_ATEK)); then ATEK_BIN=$TARGET_DIR/release/atek; fi
BENCH_BIN=$(realpath "$BENCH_BIN")
[[ -x $BENCH_BIN ]] || die "$BENCH_BIN is not an executable"
if [[ -n ${ATEK_BIN:-} ]]; then
	ATEK_BIN=$(realpath "$ATEK_BIN")
	[[ -x $ATEK_BIN ]] || die "$ATEK_BIN is not an executable"
fi

# --- network namespace ----------------------------------------------------------------------
# Every node binds 127.0.0.1 and the `atek` processes get --no-public, so nothing is meant to
# leave the machine. In a namespace of its own a row cannot: it has only a loopback device.
# (`atek beam` binds every interface and asks the local router for a port mapping, which
# atek-cli has no flag to turn off.)
NETNS=()
netns_works() { unshare --net -- sh -c 'ip link set lo up' 2>/dev/null; }
case $BENCH_NETNS in
1) netns_works || die "BENCH_NETNS=1 but 'unshare --net' with 'ip link set lo up' fails here (root and iproute2 are needed)" ;;
0) ;;
auto) if ! netns_works; then BENCH_NETNS=0; fi ;;
*) die "BENCH_NETNS must be 0, 1 or auto, not '$BENCH_NETNS'" ;;
esac
if [[ $BENCH_NETNS != 0 ]]; then
	BENCH_NETNS=1
	# shellcheck disable=SC2016 # $@ is for the inner shell
	NETNS=(unshare --net -- sh -c 'ip link set lo up && exec "$@"' sh)
	log "each row runs in a network namespace of its own (loopback only)"
else
	log "rows run in this network namespace (BENCH_NETNS=0 or no 'unshare --net' here)"
fi

# --- the temporary directory; cleanup stops CHILD_PID (atek-p2p-bench stops the `atek`
# processes it started when it gets TERM) ------------------------------------------------
make_work_dir p2p rows logs

# measure ROW:PATH RUN: one run of one row into WORK/rows/ROW_PATH-rRUN.json (its stderr in
# WORK/logs). A run that fails is recorded as {"failed": its error} and the benchmark goes
# on.
measure() {
	local row=${1%%:*} path=${1#*:} run=$2 rc=0 args
	case $row in
	tcp) args=(tcp --mib "$BENCH_MIB") ;;
	beam) args=(beam --atek "$ATEK_BIN" --mib "$BENCH_MIB") ;;
	connect) args=(connect --path "$path" --count "$BENCH_CONNECTS") ;;
	*) args=("$row" --path "$path" --mib "$BENCH_MIB") ;;
	esac
	local file=$WORK/rows/${row}_$path-r$run.json err=$WORK/logs/${row}_$path-r$run.err
	# In the background and waited for, so that Ctrl-C runs our trap at once.
	"${NETNS[@]}" "$BENCH_BIN" "${args[@]}" --max-seconds "$BENCH_MAX_SECONDS" >"$file" 2>"$err" &
	CHILD_PID=$!
	wait "$CHILD_PID" || rc=$?
	CHILD_PID=''
	if ((rc != 0)) || [[ ! -s $file ]]; then
		tail -n 20 "$err" >&2
		# The error atek-p2p-bench printed (its first line), else the last line on stderr.
		local why
		why=$(grep -m 1 '^atek-p2p-bench: ' "$err" || tail -n 1 "$err")
		python3 - "$file" "$row" "$path" "${why#atek-p2p-bench: }" "$rc" <<'PY'
import json, sys
path, row, route, why, rc = sys.argv[1:]
with open(path, "w") as f:
    f.write(json.dumps({"row": row, "path": route, "failed": f"status {rc}: {why}"}) + "\n")
PY
	fi
	python3 "$REPORT" line "$file"
}

# rotate N RUN: the indexes 0..N-1 starting at (RUN-1) mod N, so no row always goes first.
rotate() {
	local n=$1 run=$2 k
	for ((k = 0; k < n; k++)); do echo $(((k + run - 1) % n)); done
}

read -r -a rows <<<"$ROWS"
log "measuring: $BENCH_RUNS runs x ${#rows[@]} rows, $BENCH_MIB MiB per copy, in $WORK"
for ((run = 1; run <= BENCH_RUNS; run++)); do
	log "run $run of $BENCH_RUNS"
	for k in $(rotate "${#rows[@]}" "$run"); do
		measure "${rows[k]}" "$run"
	done
done

BENCH_META=$(python3 -c 'import json, sys; a = sys.argv[1:]; print(json.dumps(dict(zip(a[::2], a[1::2]))))' \
	mib "$BENCH_MIB" connects "$BENCH_CONNECTS" netns "$BENCH_NETNS" \
	bench_bin "$BENCH_BIN" atek_bin "${ATEK_BIN:-}")
export BENCH_META
python3 "$REPORT" summary "$WORK/rows" "$OUT"
