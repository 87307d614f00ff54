#!/usr/bin/env bash
# Gateway benchmark: JSON-RPC `echo` through the Atek gateway, straight to the
# echo app, and through nginx to the same app; loopback only. See bench/README.md.
#
# Environment:
#   BENCH_SECONDS=10  duration of each wrk run
#   BENCH_RUNS=3      runs per row; the table shows the median
#   BENCH_WARMUP=2    seconds of unmeasured load on each target before measuring
#   BENCH_UPSTREAM=socket  how both proxies reach the app: its Unix socket (what Atek
#                     apps listen on, ATEK_ASSIGNED_SOCKET_FILE) or tcp (its port). wrk
#                     always reaches the app directly over TCP (it cannot dial a socket).
#   BENCH_GATEWAY=1   0: no host; start the echo app directly and bench only
#                     the direct and nginx rows (no ratios)
#   BENCH_STRICT=0    1: exit 1 if a target is missed or any request failed
#   BENCH_KEEP=0      1: keep the temporary directory (logs, configs, raw wrk output)
#   BENCH_BUILD=pgo   how atek is built: pgo (scripts/build-release, as it ships) or
#                     plain (cargo build --release)
#   ATEK_BIN          use this host binary instead of building one
#   CARGO_TARGET_DIR  honoured, as by cargo
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
bench_init gateway
BENCH_GATEWAY=${BENCH_GATEWAY:-1}
BENCH_UPSTREAM=${BENCH_UPSTREAM:-socket}

# The request every row sends (the same bytes for each row).
BODY='{"jsonrpc":"2.0","id":1,"method":"echo","params":["hello",42,{"nested":[true,null,1.5]}]}'

check_choice BENCH_GATEWAY 0 1
check_choice BENCH_UPSTREAM socket tcp
# With socket, the app listens on both: the proxies use the socket, wrk's direct row the port.
if [[ $BENCH_UPSTREAM == socket ]]; then ECHO_LISTEN=both; else ECHO_LISTEN=port; fi

ensure_tools
build "$BENCH_GATEWAY"
make_work

# --- the app, behind the host or alone ---------------------------------------------------
if [[ $BENCH_GATEWAY == 1 ]]; then
	start_host "$ECHO_LISTEN" "(does \`atek run\` work yet? BENCH_GATEWAY=0 benches only the direct and nginx rows)" \
		bench.example/echo
else
	log "BENCH_GATEWAY=0: starting the echo app alone (no gateway rows)"
	start_echo "$ECHO_LISTEN"
fi
wait_app

# --- nginx -----------------------------------------------------------------------------
if [[ $BENCH_UPSTREAM == socket ]]; then
	start_nginx "unix:$APP_SOCKET"
else
	start_nginx "127.0.0.1:$APP_PORT"
fi

# --- targets and sanity checks ------------------------------------------------------------------
set_rows gateway "${HOST_URL:-}/_atek/gateway?api=bench.example/echo" /rpc
for i in "${!ROW_NAMES[@]}"; do
	python3 "$LIB" check-echo "${ROW_URLS[i]}" "$TOKEN" "$BODY" ||
		die "${ROW_NAMES[i]}: ${ROW_URLS[i]} does not echo correctly"
	log "${ROW_NAMES[i]}: ${ROW_URLS[i]}"
done

cat >"$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.body = [==[$BODY]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
EOF

find_cpu_pids

# wrk_run ROW_INDEX CONNS SECONDS OUTFILE (and OUTFILE.cpu, see with_cpu)
wrk_run() {
	with_cpu "$4" "${ROW_NAMES[$1]}" run_wrk "$4" "${ROW_NAMES[$1]}" "$2" "$3" -s "$WORK/post.lua" "${ROW_URLS[$1]}"
}

if ((BENCH_WARMUP > 0)); then
	log "warming up each target for ${BENCH_WARMUP} s"
	for i in "${!ROW_NAMES[@]}"; do
		wrk_run "$i" 32 "$BENCH_WARMUP" "$WORK/warmup-${ROW_NAMES[i]}.txt"
	done
fi

# measure ROW_INDEX SIZE CONNS RUN (SIZE: none here), for measure_all.
measure() {
	local file
	file=$WORK/wrk/${ROW_NAMES[$1]}-c$3-t$(threads_for "$3")-r$4.txt
	wrk_run "$1" "$3" "$BENCH_SECONDS" "$file"
	python3 "$REPORT" line "$file" >&2
}
# shellcheck disable=SC2119 # no sizes: the gateway's rows have one request
measure_all

meta=(atek_build "$ATEK_BUILD" upstream "$BENCH_UPSTREAM" warmup_seconds "$BENCH_WARMUP" body "$BODY" nginx "$(nginx_version)" wrk "$(wrk_version)")
for i in "${!ROW_NAMES[@]}"; do
	meta+=("${ROW_NAMES[i]}_url" "${ROW_URLS[i]}")
done
report_summary "${meta[@]}"
