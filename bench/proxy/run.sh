#!/usr/bin/env bash
# Proxy benchmark: GET of 1 KB and 1 MB bodies through the Atek subdomain proxy (with a
# user's session cookie), straight from the echo app, and through nginx to the same
# app; loopback only. See bench/README.md.
#
# Environment:
#   BENCH_SECONDS=10  duration of each wrk run
#   BENCH_RUNS=3      runs per row; the table shows the median
#   BENCH_WARMUP=2    seconds of unmeasured load on each row and size before measuring
#   BENCH_SIZES="1024 1048576"  body sizes in bytes (GET /bytes/SIZE, at most 16 MiB)
#   BENCH_NGINX_BUFFERS=large  nginx's proxy_buffers: large (16 x 64 KiB) or default
#                     (nginx's own, 8 x one page)
#   BENCH_PROXY=1     0: no host; start the echo app directly and bench only
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
bench_init proxy
BENCH_PROXY=${BENCH_PROXY:-1}
BENCH_SIZES=${BENCH_SIZES:-1024 1048576}
BENCH_NGINX_BUFFERS=${BENCH_NGINX_BUFFERS:-large}
MAX_SIZE=$((16 * 1024 * 1024)) # the echo app's limit for /bytes/{n}

check_choice BENCH_PROXY 0 1
check_choice BENCH_NGINX_BUFFERS large default
read -r -a SIZES <<<"$BENCH_SIZES"
((${#SIZES[@]} > 0)) || die "BENCH_SIZES is empty"
for s in "${SIZES[@]}"; do
	if ! [[ $s =~ ^(0|[1-9][0-9]{0,8})$ ]] || ((s > MAX_SIZE)); then
		die "BENCH_SIZES: '$s' is not a size in bytes up to $MAX_SIZE"
	fi
done

ensure_tools
build "$BENCH_PROXY"
make_work
mkdir -p "$WORK/warmup"

# --- the app, behind the host or alone ---------------------------------------------------
# The app listens on both: the proxies use its Unix socket (what Atek apps listen on,
# ATEK_ASSIGNED_SOCKET_FILE), wrk's direct row its TCP port (wrk cannot dial a socket).
PROXY_HEADERS=()
if [[ $BENCH_PROXY == 1 ]]; then
	start_host both "(BENCH_PROXY=0 benches only the direct and nginx rows)"
	HOST_PORT=${HOST_URL##*:}
	HOST_PORT=${HOST_PORT%%/*}

	# A user, logged in, who opened the app's subdomain as a browser does (bind-session
	# flow): the cookies a browser would then send to the app.
	if ! session=$(python3 "$LIB" app-session "$HOST_URL" "$TOKEN" "$SERVICE_ID" bench 2>"$WORK/session.err"); then
		sed 's/^/    /' "$WORK/session.err" >&2
		show_host_log
		die "could not get a cookie for $SERVICE_ID's subdomain (see above)"
	fi
	{ read -r APP_HOST && read -r APP_COOKIE; } <<<"$session" || true
	[[ -n ${APP_HOST:-} && -n ${APP_COOKIE:-} ]] || die "app-session printed '$session'"
	log "user 'bench' logged in and opened http://$APP_HOST/ (bind-session flow); its cookies:" \
		"$(sed -E 's/=([^;]{6})[^;]*/=\1…/g' <<<"$APP_COOKIE")"
	PROXY_HEADERS=(-H "Host: $APP_HOST" -H "Cookie: $APP_COOKIE")
else
	log "BENCH_PROXY=0: starting the echo app alone (no proxy rows)"
	start_echo both
fi
wait_app
[[ -S $APP_SOCKET ]] || die "the echo app has no socket at $APP_SOCKET"

# --- nginx -----------------------------------------------------------------------------
case $BENCH_NGINX_BUFFERS in
large)
	# nginx's default proxy_buffers (8 x one page) halve its 1 MB throughput here:
	# 64 KiB reads, as a tuned site would use, keep nginx a strong reference.
	NGINX_BUFFERS='            proxy_buffers 16 64k;
            proxy_busy_buffers_size 128k;' ;;
default) NGINX_BUFFERS='            # proxy_buffers: nginx defaults (8 x one page), BENCH_NGINX_BUFFERS=default' ;;
esac
start_nginx "unix:$APP_SOCKET" "            # proxy_buffering stays on (the default): nginx reads the app's answer into its
            # buffers and writes to the client from there. It never spills to a temporary
            # file (proxy_max_temp_file_size 0): when its buffers are full it waits, as a
            # streaming proxy does, and the benchmark never touches the disk.
            proxy_max_temp_file_size 0;
$NGINX_BUFFERS"

# --- rows and sanity checks ------------------------------------------------------------------
# ROW_URLS: each row's base URL, before /bytes/SIZE.
set_rows proxy "http://127.0.0.1:${HOST_PORT:-}" ""

# row_headers ROW: sets HDR to wrk's -H arguments of that row (only the proxy row has any).
row_headers() {
	HDR=()
	if [[ $1 == proxy ]]; then HDR=("${PROXY_HEADERS[@]}"); fi
}

# Each row must answer 200 with exactly SIZE bytes: a redirect to a login page, a 401 or
# an error page must never be measured as success.
for i in "${!ROW_NAMES[@]}"; do
	for size in "${SIZES[@]}"; do
		row_headers "${ROW_NAMES[i]}"
		check=()
		for ((h = 1; h < ${#HDR[@]}; h += 2)); do check+=("${HDR[h]}"); done
		if ! python3 "$LIB" check-get "${ROW_URLS[i]}/bytes/$size" "$size" "${check[@]}" 2>"$WORK/check.err"; then
			sed 's/^/    /' "$WORK/check.err" >&2
			die "${ROW_NAMES[i]}: GET ${ROW_URLS[i]}/bytes/$size is not a 200 with $size bytes"
		fi
	done
	log "${ROW_NAMES[i]}: ${ROW_URLS[i]}/bytes/{$(
		IFS=,
		echo "${SIZES[*]}"
	)} answer 200 with the right length${HDR[*]:+ (with Host: $APP_HOST and its cookie)}"
done

find_cpu_pids

# wrk_run ROW_INDEX SIZE CONNS SECONDS OUTFILE (and OUTFILE.cpu, see with_cpu)
wrk_run() {
	local name=${ROW_NAMES[$1]} url=${ROW_URLS[$1]}/bytes/$2
	row_headers "$name"
	with_cpu "$5" "$name" run_wrk "$5" "$name ($url)" "$3" "$4" "${HDR[@]}" "$url"
}

# after_run FILE: progress line; a run with a failed request stops the benchmark.
after_run() {
	local rc=0
	python3 "$REPORT" line "$1" >&2 || rc=$?
	if ((rc != 0)); then
		sed 's/^/    /' "$1" >&2
		show_host_log
		die "requests failed in $(basename "$1") (see above); nothing is reported for a broken row"
	fi
}

if ((BENCH_WARMUP > 0)); then
	log "warming up each row for ${BENCH_WARMUP} s per size"
	for i in "${!ROW_NAMES[@]}"; do
		for size in "${SIZES[@]}"; do
			# Named like a measurement (run 0), so that `line` checks it too.
			file=$WORK/warmup/${ROW_NAMES[i]}-s$size-c32-t2-r0.txt
			wrk_run "$i" "$size" 32 "$BENCH_WARMUP" "$file"
			python3 "$REPORT" line "$file" >/dev/null || after_run "$file"
		done
	done
fi

# measure ROW_INDEX SIZE CONNS RUN, for measure_all.
measure() {
	local file
	file=$WORK/wrk/${ROW_NAMES[$1]}-s$2-c$3-t$(threads_for "$3")-r$4.txt
	wrk_run "$1" "$2" "$3" "$BENCH_SECONDS" "$file"
	after_run "$file"
}
measure_all "${SIZES[@]}"
if grep -q "temporary file" "$NG/error.log" 2>/dev/null; then
	log "note: nginx buffered answers to temporary files:"
	grep "temporary file" "$NG/error.log" | head -n 3 | sed 's/^/    /' >&2
fi

meta=(atek_build "$ATEK_BUILD" sizes "${SIZES[*]}" warmup_seconds "$BENCH_WARMUP" upstream socket
	nginx "$(nginx_version)" nginx_buffering "proxy_buffering on, proxy_max_temp_file_size 0, proxy_buffers $BENCH_NGINX_BUFFERS"
	wrk "$(wrk_version)")
for i in "${!ROW_NAMES[@]}"; do
	meta+=("${ROW_NAMES[i]}_url" "${ROW_URLS[i]}/bytes/SIZE")
done
[[ -n ${APP_HOST:-} ]] && meta+=(proxy_host_header "$APP_HOST")
report_summary "${meta[@]}"
