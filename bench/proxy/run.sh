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
#   ATEK_BIN          use this host binary instead of building target/release/atek
#   CARGO_TARGET_DIR  honoured, as by cargo
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
LIB=$BENCH_DIR/lib/atek.py
REPORT=$BENCH_DIR/proxy/report.py
OUT=$BENCH_DIR/results/proxy.json

export BENCH_SECONDS=${BENCH_SECONDS:-10}
export BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_PROXY=${BENCH_PROXY:-1}
BENCH_SIZES=${BENCH_SIZES:-1024 1048576}
BENCH_NGINX_BUFFERS=${BENCH_NGINX_BUFFERS:-large}
READY_TIMEOUT=20
SERVICE_ID="echo"
MAX_SIZE=$((16 * 1024 * 1024)) # the echo app's limit for /bytes/{n}

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
	printf '[bench] error: %s\n' "$*" >&2
	exit 1
}

for v in BENCH_SECONDS BENCH_RUNS BENCH_WARMUP; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
((BENCH_SECONDS > 0 && BENCH_RUNS > 0)) || die "BENCH_SECONDS and BENCH_RUNS must be positive"
[[ $BENCH_PROXY == 0 || $BENCH_PROXY == 1 ]] || die "BENCH_PROXY must be 0 or 1"
[[ $BENCH_NGINX_BUFFERS == large || $BENCH_NGINX_BUFFERS == default ]] ||
	die "BENCH_NGINX_BUFFERS must be large or default"
read -r -a SIZES <<<"$BENCH_SIZES"
((${#SIZES[@]} > 0)) || die "BENCH_SIZES is empty"
for s in "${SIZES[@]}"; do
	if ! [[ $s =~ ^(0|[1-9][0-9]{0,8})$ ]] || ((s > MAX_SIZE)); then
		die "BENCH_SIZES: '$s' is not a size in bytes up to $MAX_SIZE"
	fi
done

# --- tools ---------------------------------------------------------------------
find_nginx() { command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true; }

ensure_tools() {
	command -v python3 >/dev/null || die "python3 is needed"
	command -v cargo >/dev/null || die "cargo is needed"
	local missing=()
	command -v wrk >/dev/null || missing+=(wrk)
	[[ -n $(find_nginx) ]] || missing+=(nginx-light)
	((${#missing[@]} == 0)) && return
	if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
		die "missing: ${missing[*]}; install them (e.g. apt-get install -y ${missing[*]})"
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q "${missing[@]}" >&2 ||
		{ apt-get update -q >&2 && apt-get install -y -q "${missing[@]}" >&2; } ||
		{ [[ " ${missing[*]} " == *" nginx-light "* ]] &&
			apt-get install -y -q "${missing[@]/nginx-light/nginx}" >&2; } ||
		die "could not install ${missing[*]}"
}
ensure_tools
NGINX=$(find_nginx)

# --- build -----------------------------------------------------------------------
# A relative CARGO_TARGET_DIR means relative to where we were started.
if [[ -n ${CARGO_TARGET_DIR:-} && $CARGO_TARGET_DIR != /* ]]; then
	export CARGO_TARGET_DIR=$PWD/$CARGO_TARGET_DIR
fi
cd "$ROOT"
packages=(-p atek-echo-service)
[[ $BENCH_PROXY == 1 && -z ${ATEK_BIN:-} ]] && packages=(-p atek-cli "${packages[@]}")
log "cargo build --release ${packages[*]}"
cargo build --release "${packages[@]}" >&2
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
	python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
ATEK=${ATEK_BIN:+$(realpath "$ATEK_BIN")}
ATEK=${ATEK:-$TARGET_DIR/release/atek}
ECHO_BIN=$TARGET_DIR/release/atek-echo-service
[[ -x $ECHO_BIN ]] || die "$ECHO_BIN not built"
[[ $BENCH_PROXY == 0 || -x $ATEK ]] || die "$ATEK not built"

# --- processes and cleanup -----------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/atek-bench-proxy.XXXXXX")
HOST_PID='' NGINX_PID='' ECHO_PID='' HOST_CHILDREN='' WRK_PID=''

# alive PID: the process exists and is not a zombie.
alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

# stop PID [own]: TERM, up to 5 s grace, then KILL; `own` also reaps our child.
stop() {
	local pid=$1 i
	[[ -n $pid ]] && alive "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		alive "$pid" || break
		sleep 0.05
	done
	alive "$pid" && kill -KILL "$pid" 2>/dev/null
	if [[ ${2:-} == own ]]; then wait "$pid" 2>/dev/null || true; fi
	return 0
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	stop "$WRK_PID" own
	stop "$NGINX_PID" own
	if [[ -n $HOST_PID ]]; then
		# The host should stop its services itself; make sure it did.
		HOST_CHILDREN="$HOST_CHILDREN $(pgrep -P "$HOST_PID" 2>/dev/null || true)"
		stop "$HOST_PID" own
		local pid
		for pid in $HOST_CHILDREN; do
			if alive "$pid"; then
				log "host left its child $pid running; stopping it"
				stop "$pid"
			fi
		done
	fi
	stop "$ECHO_PID" own
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_host_log() {
	[[ -f $WORK/host.log ]] || return 0
	log "last lines of the host's log:"
	tail -n 40 "$WORK/host.log" | sed 's/^/    /' >&2
}

TOKEN=$(python3 "$LIB" token)
PORT_FILE=$WORK/echo.port
mkdir -p "$WORK/wrk" "$WORK/warmup" "$WORK/nginx"

# --- the app, behind the host or alone ---------------------------------------------------
# The app listens on both: the proxies use its Unix socket (what Atek apps listen on,
# ATEK_ASSIGNED_SOCKET_FILE), wrk's direct row its TCP port (wrk cannot dial a socket).
PROXY_HEADERS=()
if [[ $BENCH_PROXY == 1 ]]; then
	# The service package and host config, generated: the exec path is machine specific.
	mkdir -p "$WORK/config" "$WORK/echo-pkg"
	chmod 700 "$WORK/config"
	python3 - "$WORK" "$ECHO_BIN" "$TOKEN" "$PORT_FILE" "$SERVICE_ID" <<'PY'
import json, pathlib, sys
work, echo_bin, token, port_file, service_id = sys.argv[1:]
work = pathlib.Path(work)
(work / "echo-pkg" / "atek.json").write_text(json.dumps({
    "name": "echo",
    "runtime": "exec",
    "exec": [echo_bin],
}, indent=2) + "\n")
(work / "config" / "config.json").write_text(json.dumps({
    "port": 0,
    "bindAddress": "127.0.0.1",
    "systemAuthTokens": [token],
    "coreServices": [{
        "id": service_id,
        "sourceUrl": (work / "echo-pkg").as_uri(),
        "config": {"ECHO_LISTEN": "both", "ECHO_PORT_FILE": port_file},
    }],
}, indent=2) + "\n")
PY
	log "starting $ATEK run --config-dir $WORK/config"
	"$ATEK" run --config-dir "$WORK/config" >"$WORK/host.log" 2>&1 &
	HOST_PID=$!
	if ! HOST_URL=$(python3 "$LIB" wait-host "$WORK/config" "$HOST_PID" "$TOKEN" "$READY_TIMEOUT"); then
		show_host_log
		die "the host did not start, or was not ready within ${READY_TIMEOUT} s" \
			"(BENCH_PROXY=0 benches only the direct and nginx rows)"
	fi
	HOST_PORT=${HOST_URL##*:}
	HOST_PORT=${HOST_PORT%%/*}
	log "host ready at $HOST_URL (pid $HOST_PID)"
	HOST_CHILDREN=$(pgrep -P "$HOST_PID" || true)
	if APP_PORT=$(python3 "$LIB" service-port "$HOST_URL" "$TOKEN" "$SERVICE_ID" 2>"$WORK/service-port.err"); then
		log "echo app port $APP_PORT (from services-api get)"
	else
		APP_PORT=$(python3 "$LIB" wait-file "$PORT_FILE" "$HOST_PID" "$READY_TIMEOUT") ||
			die "no app port: services-api get has no port ($(cat "$WORK/service-port.err"))" \
				"and the echo service wrote no $PORT_FILE"
		log "echo app port $APP_PORT (from ECHO_PORT_FILE; services-api get gave none)"
	fi
	HOST_CHILDREN="$HOST_CHILDREN $(pgrep -P "$HOST_PID" || true)"
	APP_SOCKET=$WORK/config/sockets/$SERVICE_ID.sock

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
	APP_SOCKET=$WORK/echo.sock
	ECHO_LISTEN=both ATEK_ASSIGNED_PORT=0 ATEK_ASSIGNED_SOCKET_FILE=$APP_SOCKET ECHO_PORT_FILE=$PORT_FILE \
		"$ECHO_BIN" 2>"$WORK/echo.log" &
	ECHO_PID=$!
	APP_PORT=$(python3 "$LIB" wait-file "$PORT_FILE" "$ECHO_PID" "$READY_TIMEOUT") ||
		die "the echo app wrote no port file"
fi
python3 "$LIB" wait-http "http://127.0.0.1:$APP_PORT/" "$READY_TIMEOUT" || die "the echo app is not answering"
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
NGINX_PORT=$(python3 "$LIB" free-port)
NG=$WORK/nginx
temp_paths="client_body_temp_path $NG/client_body; proxy_temp_path $NG/proxy;"
for m in fastcgi uwsgi scgi; do
	"$NGINX" -V 2>&1 | grep -q -- "--without-http_${m}_module" || temp_paths+=" ${m}_temp_path $NG/$m;"
done
cat >"$NG/nginx.conf" <<EOF
# Generated by bench/proxy/run.sh: a plain, well-tuned reverse proxy.
daemon off;
# As the invoking user: the host's sockets folder is private to it (mode 0700).
user $(id -un) $(id -gn);
worker_processes auto;
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    $temp_paths
    keepalive_requests 1000000;
    upstream echo {
        server unix:$APP_SOCKET;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # proxy_buffering stays on (the default): nginx reads the app's answer into its
            # buffers and writes to the client from there. It never spills to a temporary
            # file (proxy_max_temp_file_size 0): when its buffers are full it waits, as a
            # streaming proxy does, and the benchmark never touches the disk.
            proxy_max_temp_file_size 0;
$NGINX_BUFFERS
        }
    }
}
EOF
"$NGINX" -e "$NG/error.log" -p "$NG" -c "$NG/nginx.conf" &
NGINX_PID=$!
python3 "$LIB" wait-http "http://127.0.0.1:$NGINX_PORT/" "$READY_TIMEOUT" || {
	cat "$NG/error.log" >&2
	die "nginx did not come up"
}

# --- rows and sanity checks ------------------------------------------------------------------
ROW_NAMES=() ROW_BASES=()
if [[ $BENCH_PROXY == 1 ]]; then
	ROW_NAMES+=(proxy) ROW_BASES+=("http://127.0.0.1:$HOST_PORT")
fi
ROW_NAMES+=(direct nginx)
ROW_BASES+=("http://127.0.0.1:$APP_PORT" "http://127.0.0.1:$NGINX_PORT")

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
		if ! python3 "$LIB" check-get "${ROW_BASES[i]}/bytes/$size" "$size" "${check[@]}" 2>"$WORK/check.err"; then
			sed 's/^/    /' "$WORK/check.err" >&2
			die "${ROW_NAMES[i]}: GET ${ROW_BASES[i]}/bytes/$size is not a 200 with $size bytes"
		fi
	done
	log "${ROW_NAMES[i]}: ${ROW_BASES[i]}/bytes/{$(
		IFS=,
		echo "${SIZES[*]}"
	)} answer 200 with the right length${HDR[*]:+ (with Host: $APP_HOST and its cookie)}"
done

# cpu_ticks PID...: user + system CPU time of these processes (all threads), in clock ticks.
cpu_ticks() {
	local total=0 pid stat fields
	for pid; do
		stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
		read -r -a fields <<<"${stat##*) }"
		# After the command name: field 3 (state) is index 0; utime, stime are 14 and 15.
		total=$((total + fields[11] + fields[12]))
	done
	echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)
# The app: the host's child running the echo binary, or the one we started.
APP_PID=${ECHO_PID:-$(pgrep -P "$HOST_PID" -f "$ECHO_BIN" | head -n 1 || true)}
[[ -n $APP_PID ]] || die "cannot find the echo app's process"
NGINX_PIDS=("$NGINX_PID")
mapfile -t -O 1 NGINX_PIDS < <(pgrep -P "$NGINX_PID")

# threads_for CONNS: wrk threads: 1 for one connection, else 2.
threads_for() { if (($1 > 1)); then echo 2; else echo 1; fi; }

# wrk_run ROW_INDEX SIZE CONNS SECONDS OUTFILE
# wrk runs in the background and we `wait` for it, so that Ctrl-C runs our trap
# at once (wrk itself catches SIGINT and exits 0, which bash would take as handled).
# Besides wrk's output, writes OUTFILE.cpu: "PROXY_TICKS APP_TICKS CLK_TCK", the CPU time
# (user + system) the row's proxy (none for direct) and the app used during the run.
wrk_run() {
	local name=${ROW_NAMES[$1]} url=${ROW_BASES[$1]}/bytes/$2 proxy_pids=() p0 a0
	row_headers "$name"
	case $name in
	proxy) proxy_pids=("$HOST_PID") ;;
	nginx) proxy_pids=("${NGINX_PIDS[@]}") ;;
	esac
	p0=$(cpu_ticks "${proxy_pids[@]}")
	a0=$(cpu_ticks "$APP_PID")
	wrk -t"$(threads_for "$3")" -c"$3" -d"$4"s --latency "${HDR[@]}" "$url" >"$5" 2>&1 &
	WRK_PID=$!
	if ! wait "$WRK_PID"; then
		cat "$5" >&2
		die "wrk failed on $name ($url)"
	fi
	WRK_PID=''
	echo "$(($(cpu_ticks "${proxy_pids[@]}") - p0)) $(($(cpu_ticks "$APP_PID") - a0)) $CLK_TCK" >"$5.cpu"
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

n=${#ROW_NAMES[@]}
total=$((BENCH_RUNS * ${#SIZES[@]} * 2 * n * BENCH_SECONDS))
log "measuring: ${BENCH_RUNS} runs x ${#SIZES[@]} sizes x 2 concurrencies x $n rows x ${BENCH_SECONDS} s (about ${total} s)"
for ((run = 1; run <= BENCH_RUNS; run++)); do
	for size in "${SIZES[@]}"; do
		for conns in 1 32; do
			# Rotate the row order each run so no row always goes first.
			for ((k = 0; k < n; k++)); do
				i=$(((k + run - 1) % n))
				file=$WORK/wrk/${ROW_NAMES[i]}-s$size-c$conns-t$(threads_for "$conns")-r$run.txt
				wrk_run "$i" "$size" "$conns" "$BENCH_SECONDS" "$file"
				after_run "$file"
			done
		done
	done
done
if [[ -n $HOST_PID ]] && ! alive "$HOST_PID"; then
	show_host_log
	die "the host died during the benchmark"
fi
if grep -q "temporary file" "$NG/error.log" 2>/dev/null; then
	log "note: nginx buffered answers to temporary files:"
	grep "temporary file" "$NG/error.log" | head -n 3 | sed 's/^/    /' >&2
fi

meta=(sizes "${SIZES[*]}" warmup_seconds "$BENCH_WARMUP" upstream socket
	nginx "$("$NGINX" -v 2>&1)" nginx_buffering "proxy_buffering on, proxy_max_temp_file_size 0, proxy_buffers $BENCH_NGINX_BUFFERS"
	wrk "$( (wrk --version 2>&1 || true) | head -n 1)")
for i in "${!ROW_NAMES[@]}"; do
	meta+=("${ROW_NAMES[i]}_url" "${ROW_BASES[i]}/bytes/SIZE")
done
[[ -n ${APP_HOST:-} ]] && meta+=(proxy_host_header "$APP_HOST")
BENCH_META=$(python3 -c 'import json, sys; a = sys.argv[1:]; print(json.dumps(dict(zip(a[::2], a[1::2]))))' "${meta[@]}")
export BENCH_META
python3 "$REPORT" summary "$WORK/wrk" "$OUT"
