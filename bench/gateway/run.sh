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
#   ATEK_BIN          use this host binary instead of building target/release/atek
#   CARGO_TARGET_DIR  honoured, as by cargo
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
LIB=$BENCH_DIR/lib/atek.py
REPORT=$BENCH_DIR/gateway/report.py
OUT=$BENCH_DIR/results/gateway.json

export BENCH_SECONDS=${BENCH_SECONDS:-10}
export BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_GATEWAY=${BENCH_GATEWAY:-1}
BENCH_UPSTREAM=${BENCH_UPSTREAM:-socket}
READY_TIMEOUT=20

# The request every row sends (the same bytes for each row).
BODY='{"jsonrpc":"2.0","id":1,"method":"echo","params":["hello",42,{"nested":[true,null,1.5]}]}'

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
	printf '[bench] error: %s\n' "$*" >&2
	exit 1
}

for v in BENCH_SECONDS BENCH_RUNS BENCH_WARMUP; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
((BENCH_SECONDS > 0 && BENCH_RUNS > 0)) || die "BENCH_SECONDS and BENCH_RUNS must be positive"
[[ $BENCH_GATEWAY == 0 || $BENCH_GATEWAY == 1 ]] || die "BENCH_GATEWAY must be 0 or 1"
[[ $BENCH_UPSTREAM == socket || $BENCH_UPSTREAM == tcp ]] || die "BENCH_UPSTREAM must be socket or tcp"
# With socket, the app listens on both: the proxies use the socket, wrk's direct row the port.
if [[ $BENCH_UPSTREAM == socket ]]; then ECHO_LISTEN=both; else ECHO_LISTEN=port; fi

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
[[ $BENCH_GATEWAY == 1 && -z ${ATEK_BIN:-} ]] && packages=(-p atek-cli "${packages[@]}")
log "cargo build --release ${packages[*]}"
cargo build --release "${packages[@]}" >&2
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
	python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
ATEK=${ATEK_BIN:+$(realpath "$ATEK_BIN")}
ATEK=${ATEK:-$TARGET_DIR/release/atek}
ECHO_BIN=$TARGET_DIR/release/atek-echo-service
[[ -x $ECHO_BIN ]] || die "$ECHO_BIN not built"
[[ $BENCH_GATEWAY == 0 || -x $ATEK ]] || die "$ATEK not built"

# --- processes and cleanup -----------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/atek-bench-gateway.XXXXXX")
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
	log "last lines of the host's log:"
	tail -n 40 "$WORK/host.log" | sed 's/^/    /' >&2
}

TOKEN=$(python3 "$LIB" token)
PORT_FILE=$WORK/echo.port
mkdir -p "$WORK/wrk" "$WORK/nginx"

# --- the app, behind the host or alone ---------------------------------------------------
if [[ $BENCH_GATEWAY == 1 ]]; then
	# The service package and host config, generated: the exec path is machine specific.
	mkdir -p "$WORK/config" "$WORK/echo-pkg"
	chmod 700 "$WORK/config"
	python3 - "$WORK" "$ECHO_BIN" "$TOKEN" "$PORT_FILE" "$ECHO_LISTEN" <<'PY'
import json, pathlib, sys
work, echo_bin, token, port_file, listen = sys.argv[1:]
work = pathlib.Path(work)
(work / "echo-pkg" / "atek.json").write_text(json.dumps({
    "name": "echo",
    "runtime": "exec",
    "exec": [echo_bin],
    "exports": [{"api": "bench.example/echo", "path": "/rpc"}],
}, indent=2) + "\n")
(work / "config" / "config.json").write_text(json.dumps({
    "port": 0,
    "bindAddress": "127.0.0.1",
    "systemAuthTokens": [token],
    "coreServices": [{
        "id": "echo",
        "sourceUrl": (work / "echo-pkg").as_uri(),
        "config": {"ECHO_LISTEN": listen, "ECHO_PORT_FILE": port_file},
    }],
}, indent=2) + "\n")
PY
	log "starting $ATEK run --config-dir $WORK/config"
	"$ATEK" run --config-dir "$WORK/config" >"$WORK/host.log" 2>&1 &
	HOST_PID=$!
	if ! HOST_URL=$(python3 "$LIB" wait-host "$WORK/config" "$HOST_PID" "$TOKEN" "$READY_TIMEOUT"); then
		show_host_log
		die "the host did not start, or was not ready within ${READY_TIMEOUT} s" \
			"(does \`atek run\` work yet? BENCH_GATEWAY=0 benches only the direct and nginx rows)"
	fi
	log "host ready at $HOST_URL (pid $HOST_PID)"
	HOST_CHILDREN=$(pgrep -P "$HOST_PID" || true)
	if APP_PORT=$(python3 "$LIB" service-port "$HOST_URL" "$TOKEN" echo 2>"$WORK/service-port.err"); then
		log "echo app port $APP_PORT (from services-api get)"
	else
		APP_PORT=$(python3 "$LIB" wait-file "$PORT_FILE" "$HOST_PID" "$READY_TIMEOUT") ||
			die "no app port: services-api get has no port ($(cat "$WORK/service-port.err"))" \
				"and the echo service wrote no $PORT_FILE"
		log "echo app port $APP_PORT (from ECHO_PORT_FILE; services-api get gave none)"
	fi
	HOST_CHILDREN="$HOST_CHILDREN $(pgrep -P "$HOST_PID" || true)"
	APP_SOCKET=$WORK/config/sockets/echo.sock
else
	log "BENCH_GATEWAY=0: starting the echo app alone (no gateway rows)"
	APP_SOCKET=$WORK/echo.sock
	ECHO_LISTEN=$ECHO_LISTEN ATEK_ASSIGNED_PORT=0 ATEK_ASSIGNED_SOCKET_FILE=$APP_SOCKET ECHO_PORT_FILE=$PORT_FILE \
		"$ECHO_BIN" 2>"$WORK/echo.log" &
	ECHO_PID=$!
	APP_PORT=$(python3 "$LIB" wait-file "$PORT_FILE" "$ECHO_PID" "$READY_TIMEOUT") ||
		die "the echo app wrote no port file"
fi
python3 "$LIB" wait-http "http://127.0.0.1:$APP_PORT/" "$READY_TIMEOUT" || die "the echo app is not answering"

# --- nginx -----------------------------------------------------------------------------
NGINX_PORT=$(python3 "$LIB" free-port)
NG=$WORK/nginx
temp_paths="client_body_temp_path $NG/client_body; proxy_temp_path $NG/proxy;"
for m in fastcgi uwsgi scgi; do
	"$NGINX" -V 2>&1 | grep -q -- "--without-http_${m}_module" || temp_paths+=" ${m}_temp_path $NG/$m;"
done
if [[ $BENCH_UPSTREAM == socket ]]; then NGINX_UPSTREAM=unix:$APP_SOCKET; else NGINX_UPSTREAM=127.0.0.1:$APP_PORT; fi
cat >"$NG/nginx.conf" <<EOF
# Generated by bench/gateway/run.sh: a plain, well-tuned reverse proxy.
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
        server $NGINX_UPSTREAM;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
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

# --- targets and sanity checks ------------------------------------------------------------------
ROW_NAMES=() ROW_URLS=()
if [[ $BENCH_GATEWAY == 1 ]]; then
	ROW_NAMES+=(gateway) ROW_URLS+=("$HOST_URL/_atek/gateway?api=bench.example/echo")
fi
ROW_NAMES+=(direct nginx)
ROW_URLS+=("http://127.0.0.1:$APP_PORT/rpc" "http://127.0.0.1:$NGINX_PORT/rpc")
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

# threads_for CONNS: wrk threads: 1 for one connection, else 2.
threads_for() { if (($1 > 1)); then echo 2; else echo 1; fi; }

# wrk_run NAME URL CONNS SECONDS OUTFILE
# wrk runs in the background and we `wait` for it, so that Ctrl-C runs our trap
# at once (wrk itself catches SIGINT and exits 0, which bash would take as handled).
wrk_run() {
	wrk -t"$(threads_for "$3")" -c"$3" -d"$4"s --latency -s "$WORK/post.lua" "$2" >"$5" 2>&1 &
	WRK_PID=$!
	if ! wait "$WRK_PID"; then
		cat "$5" >&2
		die "wrk failed on $1"
	fi
	WRK_PID=''
}

if ((BENCH_WARMUP > 0)); then
	log "warming up each target for ${BENCH_WARMUP} s"
	for i in "${!ROW_NAMES[@]}"; do
		wrk_run "${ROW_NAMES[i]}" "${ROW_URLS[i]}" 32 "$BENCH_WARMUP" "$WORK/warmup-${ROW_NAMES[i]}.txt"
	done
fi

n=${#ROW_NAMES[@]}
total=$((BENCH_RUNS * 2 * n * BENCH_SECONDS))
log "measuring: ${BENCH_RUNS} runs x 2 concurrencies x $n rows x ${BENCH_SECONDS} s (about ${total} s)"
for ((run = 1; run <= BENCH_RUNS; run++)); do
	for conns in 1 32; do
		# Rotate the row order each run so no row always goes first.
		for ((k = 0; k < n; k++)); do
			i=$(((k + run - 1) % n))
			name=${ROW_NAMES[i]}
			file=$WORK/wrk/$name-c$conns-t$(threads_for "$conns")-r$run.txt
			wrk_run "$name" "${ROW_URLS[i]}" "$conns" "$BENCH_SECONDS" "$file"
			python3 "$REPORT" line "$file" >&2
		done
	done
done
if [[ -n $HOST_PID ]] && ! alive "$HOST_PID"; then
	show_host_log
	die "the host died during the benchmark"
fi

meta=(upstream "$BENCH_UPSTREAM" warmup_seconds "$BENCH_WARMUP" body "$BODY" nginx "$("$NGINX" -v 2>&1)" wrk "$( (wrk --version 2>&1 || true) | head -n 1)")
for i in "${!ROW_NAMES[@]}"; do
	meta+=("${ROW_NAMES[i]}_url" "${ROW_URLS[i]}")
done
BENCH_META=$(python3 -c 'import json, sys; a = sys.argv[1:]; print(json.dumps(dict(zip(a[::2], a[1::2]))))' "${meta[@]}")
export BENCH_META
python3 "$REPORT" summary "$WORK/wrk" "$OUT"
