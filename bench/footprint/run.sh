#!/usr/bin/env bash
# Footprint benchmark: start-to-ready time and idle RSS of `atek run` (no
# services), N times, next to an idle Node.js HTTP server. See bench/README.md.
#
# Environment:
#   FOOTPRINT_RUNS=10          starts of each
#   FOOTPRINT_IDLE_SECONDS=2   RSS is read this long after ready
#   FOOTPRINT_POLL_MS=2        readiness polling interval
#   FOOTPRINT_TIMEOUT=20       seconds allowed per start
#   FOOTPRINT_NODE=1           0: skip the Node.js comparison
#   BENCH_STRICT=0             1: exit 1 if a target is missed
#   BENCH_BUILD=pgo            how atek is built: pgo (scripts/build-release, as it ships)
#                              or plain (cargo build --release)
#   ATEK_BIN                   measure this binary instead of building one
#   CARGO_TARGET_DIR           honoured, as by cargo
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
OUT=$BENCH_DIR/results/footprint.json

die() {
	printf '[bench] error: %s\n' "$*" >&2
	exit 1
}

command -v python3 >/dev/null || die "python3 is needed"

if [[ -n ${ATEK_BIN:-} ]]; then
	ATEK=$(realpath "$ATEK_BIN")
else
	command -v cargo >/dev/null || die "cargo is needed"
	if [[ -n ${CARGO_TARGET_DIR:-} && $CARGO_TARGET_DIR != /* ]]; then
		export CARGO_TARGET_DIR=$PWD/$CARGO_TARGET_DIR
	fi
	cd "$ROOT"
	case ${BENCH_BUILD:-pgo} in
	pgo)
		printf '[bench] scripts/build-release (profile-guided; BENCH_BUILD=plain skips it)\n' >&2
		ATEK=$(scripts/build-release) || die "scripts/build-release failed"
		;;
	plain)
		printf '[bench] cargo build --release -p atek-cli\n' >&2
		cargo build --release -p atek-cli >&2
		TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
			python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
		ATEK=$TARGET_DIR/release/atek
		;;
	*) die "BENCH_BUILD must be pgo or plain" ;;
	esac
fi
[[ -x $ATEK ]] || die "$ATEK is not an executable"

exec python3 "$BENCH_DIR/footprint/measure.py" "$ATEK" "$OUT"
