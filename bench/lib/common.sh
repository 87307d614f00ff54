# shellcheck shell=bash
# What bench/gateway/run.sh and bench/proxy/run.sh share; sourced by them, after
# `set -euo pipefail`. See bench/README.md.
#
# bench_init NAME reads the knobs both take (BENCH_SECONDS, BENCH_RUNS, BENCH_WARMUP),
# ensure_tools and build get wrk, nginx and the binaries, make_work creates the
# temporary directory and the traps that stop every process started here and remove
# it on exit (BENCH_KEEP=1 keeps it), start_host or start_echo start the echo app
# behind the host or alone, start_nginx puts nginx in front of it, measure_all runs the
# interleaved measurements and report_summary hands them to NAME/report.py.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
LIB=$BENCH_DIR/lib/atek.py
READY_TIMEOUT=20
SERVICE_ID="echo"

# shellcheck source-path=SCRIPTDIR source=log.sh
source "$BENCH_DIR/lib/log.sh"

# bench_init NAME: REPORT and OUT of the benchmark NAME; BENCH_SECONDS and BENCH_RUNS
# (exported for report.py) and BENCH_WARMUP, with their defaults, checked.
bench_init() {
	BENCH_NAME=$1
	REPORT=$BENCH_DIR/$BENCH_NAME/report.py
	OUT=$BENCH_DIR/results/$BENCH_NAME.json
	export BENCH_SECONDS=${BENCH_SECONDS:-10}
	export BENCH_RUNS=${BENCH_RUNS:-3}
	BENCH_WARMUP=${BENCH_WARMUP:-2}
	local v
	for v in BENCH_SECONDS BENCH_RUNS BENCH_WARMUP; do
		[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
	done
	((BENCH_SECONDS > 0 && BENCH_RUNS > 0)) || die "BENCH_SECONDS and BENCH_RUNS must be positive"
}

# check_choice VAR A B: VAR's value must be A or B.
check_choice() {
	[[ ${!1} == "$2" || ${!1} == "$3" ]] || die "$1 must be $2 or $3"
}

# --- tools ---------------------------------------------------------------------
find_nginx() { command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true; }

# ensure_tools: python3 and cargo, wrk and nginx (installed if missing and we may); sets NGINX.
ensure_tools() {
	command -v python3 >/dev/null || die "python3 is needed"
	command -v cargo >/dev/null || die "cargo is needed"
	local missing=()
	command -v wrk >/dev/null || missing+=(wrk)
	[[ -n $(find_nginx) ]] || missing+=(nginx-light)
	if ((${#missing[@]} > 0)); then
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
	fi
	NGINX=$(find_nginx)
}

# --- build -----------------------------------------------------------------------
# build WITH_HOST: builds the echo app, and atek too if WITH_HOST is 1 and ATEK_BIN is
# not set; sets ATEK, ATEK_BUILD (what was measured: pgo, plain or given) and ECHO_BIN.
# atek is built as it ships, with profile-guided optimisation (scripts/build-release);
# BENCH_BUILD=plain measures a plain `cargo build --release` instead. Leaves us in the
# repository's root.
build() {
	# A relative CARGO_TARGET_DIR means relative to where we were started.
	if [[ -n ${CARGO_TARGET_DIR:-} && $CARGO_TARGET_DIR != /* ]]; then
		export CARGO_TARGET_DIR=$PWD/$CARGO_TARGET_DIR
	fi
	cd "$ROOT" || exit
	BENCH_BUILD=${BENCH_BUILD:-pgo}
	check_choice BENCH_BUILD pgo plain
	local packages=(-p atek-echo-service) target_dir
	if [[ $1 == 1 && -z ${ATEK_BIN:-} && $BENCH_BUILD == plain ]]; then
		packages=(-p atek-cli "${packages[@]}")
	fi
	log "cargo build --release ${packages[*]}"
	cargo build --release "${packages[@]}" >&2
	target_dir=$(cargo metadata --format-version 1 --no-deps |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
	if [[ -n ${ATEK_BIN:-} ]]; then
		ATEK=$(realpath "$ATEK_BIN") ATEK_BUILD="given: $ATEK_BIN"
	elif [[ $1 == 1 && $BENCH_BUILD == pgo ]]; then
		log "scripts/build-release (atek with profile-guided optimisation; BENCH_BUILD=plain skips it)"
		ATEK=$(scripts/build-release) || die "scripts/build-release failed"
		ATEK_BUILD="pgo (scripts/build-release)"
	else
		ATEK=$target_dir/release/atek ATEK_BUILD="plain (cargo build --release)"
	fi
	ECHO_BIN=$target_dir/release/atek-echo-service
	[[ -x $ECHO_BIN ]] || die "$ECHO_BIN not built"
	[[ $1 == 0 || -x $ATEK ]] || die "$ATEK not built"
}

# --- processes and cleanup -----------------------------------------------------------
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

# make_work: the temporary directory WORK (with wrk/ and nginx/), the cleanup traps, a
# fresh system TOKEN and the PORT_FILE the echo app writes its port to.
make_work() {
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/atek-bench-$BENCH_NAME.XXXXXX")
	HOST_PID='' NGINX_PID='' ECHO_PID='' HOST_CHILDREN='' WRK_PID=''
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	TOKEN=$(python3 "$LIB" token)
	PORT_FILE=$WORK/echo.port
	mkdir -p "$WORK/wrk" "$WORK/nginx"
}

show_host_log() {
	[[ -f $WORK/host.log ]] || return 0
	log "last lines of the host's log:"
	tail -n 40 "$WORK/host.log" | sed 's/^/    /' >&2
}

# --- the app, behind the host or alone ---------------------------------------------------
# start_host LISTEN HINT [API]: writes the echo app's service package (exporting API at
# /rpc, if given) and a host config with the app as the core service SERVICE_ID
# (ECHO_LISTEN=LISTEN), starts `atek run` and waits until it is ready (HINT: what to try
# if it is not). Sets HOST_PID, HOST_URL, HOST_CHILDREN, APP_PORT and APP_SOCKET.
start_host() {
	local listen=$1 hint=$2 api=${3:-}
	python3 "$LIB" echo-host "$WORK" "$ECHO_BIN" "$TOKEN" "$PORT_FILE" "$SERVICE_ID" "$listen" "$api"
	log "starting $ATEK run --config-dir $WORK/config"
	"$ATEK" run --config-dir "$WORK/config" >"$WORK/host.log" 2>&1 &
	HOST_PID=$!
	if ! HOST_URL=$(python3 "$LIB" wait-host "$WORK/config" "$HOST_PID" "$TOKEN" "$READY_TIMEOUT"); then
		show_host_log
		die "the host did not start, or was not ready within ${READY_TIMEOUT} s" "$hint"
	fi
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
}

# start_echo LISTEN: starts the echo app alone (ECHO_LISTEN=LISTEN), on the socket
# APP_SOCKET; sets ECHO_PID and APP_PORT.
start_echo() {
	APP_SOCKET=$WORK/echo.sock
	ECHO_LISTEN=$1 ATEK_ASSIGNED_PORT=0 ATEK_ASSIGNED_SOCKET_FILE=$APP_SOCKET ECHO_PORT_FILE=$PORT_FILE \
		"$ECHO_BIN" 2>"$WORK/echo.log" &
	ECHO_PID=$!
	APP_PORT=$(python3 "$LIB" wait-file "$PORT_FILE" "$ECHO_PID" "$READY_TIMEOUT") ||
		die "the echo app wrote no port file"
}

wait_app() {
	python3 "$LIB" wait-http "http://127.0.0.1:$APP_PORT/" "$READY_TIMEOUT" || die "the echo app is not answering"
}

# --- nginx -----------------------------------------------------------------------------
# start_nginx UPSTREAM [LINES]: nginx in front of the app at UPSTREAM (unix:PATH or
# HOST:PORT), LINES added to its location; sets NG (its folder), NGINX_PORT, NGINX_PID.
start_nginx() {
	local upstream=$1 lines=${2:-} temp_paths m
	NGINX_PORT=$(python3 "$LIB" free-port)
	NG=$WORK/nginx
	temp_paths="client_body_temp_path $NG/client_body; proxy_temp_path $NG/proxy;"
	for m in fastcgi uwsgi scgi; do
		"$NGINX" -V 2>&1 | grep -q -- "--without-http_${m}_module" || temp_paths+=" ${m}_temp_path $NG/$m;"
	done
	{
		cat <<EOF
# Generated by bench/$BENCH_NAME/run.sh: a plain, well-tuned reverse proxy.
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
        server $upstream;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
EOF
		if [[ -n $lines ]]; then printf '%s\n' "$lines"; fi
		cat <<'EOF'
        }
    }
}
EOF
	} >"$NG/nginx.conf"
	"$NGINX" -e "$NG/error.log" -p "$NG" -c "$NG/nginx.conf" &
	NGINX_PID=$!
	python3 "$LIB" wait-http "http://127.0.0.1:$NGINX_PORT/" "$READY_TIMEOUT" || {
		cat "$NG/error.log" >&2
		die "nginx did not come up"
	}
}

# --- rows and wrk ------------------------------------------------------------------
# set_rows ROW URL SUFFIX: ROW_NAMES and ROW_URLS: ROW at URL if the host runs, then
# direct (the app) and nginx, each at its address followed by SUFFIX.
set_rows() {
	ROW_NAMES=() ROW_URLS=()
	if [[ -n $HOST_PID ]]; then ROW_NAMES+=("$1") ROW_URLS+=("$2"); fi
	ROW_NAMES+=(direct nginx)
	ROW_URLS+=("http://127.0.0.1:$APP_PORT$3" "http://127.0.0.1:$NGINX_PORT$3")
}

# threads_for CONNS: wrk threads: 1 for one connection, else 2.
threads_for() { if (($1 > 1)); then echo 2; else echo 1; fi; }

# run_wrk OUTFILE WHAT CONNS SECONDS ARG...: wrk --latency with CONNS connections for
# SECONDS, then ARGs (its script or headers, and the URL); dies with its output if it fails.
# wrk runs in the background and we `wait` for it, so that Ctrl-C runs our trap
# at once (wrk itself catches SIGINT and exits 0, which bash would take as handled).
run_wrk() {
	local out=$1 what=$2 conns=$3 seconds=$4
	shift 4
	wrk -t"$(threads_for "$conns")" -c"$conns" -d"$seconds"s --latency "$@" >"$out" 2>&1 &
	WRK_PID=$!
	if ! wait "$WRK_PID"; then
		cat "$out" >&2
		die "wrk failed on $what"
	fi
	WRK_PID=''
}

# measure_all [SIZE...]: BENCH_RUNS runs, each of every SIZE (none: one pass), at 1 and
# 32 connections, of every row, in this order; the rows' order rotates from run to run.
# Calls `measure ROW_INDEX SIZE CONNS RUN` (the script's) for each.
measure_all() {
	local n=${#ROW_NAMES[@]} sizes=("$@") what total run size conns k
	what=" x ${#sizes[@]} sizes"
	if ((${#sizes[@]} == 0)); then sizes=('') what=''; fi
	total=$((BENCH_RUNS * ${#sizes[@]} * 2 * n * BENCH_SECONDS))
	log "measuring: ${BENCH_RUNS} runs$what x 2 concurrencies x $n rows x ${BENCH_SECONDS} s (about ${total} s)"
	for ((run = 1; run <= BENCH_RUNS; run++)); do
		for size in "${sizes[@]}"; do
			for conns in 1 32; do
				# Rotate the row order each run so no row always goes first.
				for ((k = 0; k < n; k++)); do
					measure $(((k + run - 1) % n)) "$size" "$conns" "$run"
				done
			done
		done
	done
	if [[ -n $HOST_PID ]] && ! alive "$HOST_PID"; then
		show_host_log
		die "the host died during the benchmark"
	fi
}

# --- CPU per request --------------------------------------------------------------------
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

# find_cpu_pids: CLK_TCK, APP_PID (the echo app: the host's child running the echo binary,
# or the one we started) and NGINX_PIDS (nginx's master and workers), for with_cpu.
find_cpu_pids() {
	CLK_TCK=$(getconf CLK_TCK)
	APP_PID=${ECHO_PID:-$(pgrep -P "$HOST_PID" -f "$ECHO_BIN" | head -n 1 || true)}
	[[ -n $APP_PID ]] || die "cannot find the echo app's process"
	NGINX_PIDS=("$NGINX_PID")
	mapfile -t -O 1 NGINX_PIDS < <(pgrep -P "$NGINX_PID")
}

# with_cpu OUTFILE ROW CMD...: runs CMD, then writes OUTFILE.cpu: "PROXY_TICKS APP_TICKS
# CLK_TCK", the CPU time (user + system) that ROW's proxy (nginx's processes for nginx,
# none for direct, the host for the host's row) and the app used meanwhile.
with_cpu() {
	local out=$1 row=$2 proxy_pids=() p0 a0
	shift 2
	case $row in
	direct) ;;
	nginx) proxy_pids=("${NGINX_PIDS[@]}") ;;
	*) proxy_pids=("$HOST_PID") ;;
	esac
	p0=$(cpu_ticks "${proxy_pids[@]}")
	a0=$(cpu_ticks "$APP_PID")
	"$@"
	echo "$(($(cpu_ticks "${proxy_pids[@]}") - p0)) $(($(cpu_ticks "$APP_PID") - a0)) $CLK_TCK" >"$out.cpu"
}

nginx_version() { "$NGINX" -v 2>&1; }
wrk_version() { (wrk --version 2>&1 || true) | head -n 1; }

# report_summary KEY VALUE...: report.py's table, targets and result file, with these
# facts (a JSON object in BENCH_META).
report_summary() {
	BENCH_META=$(python3 -c 'import json, sys; a = sys.argv[1:]; print(json.dumps(dict(zip(a[::2], a[1::2]))))' "$@")
	export BENCH_META
	python3 "$REPORT" summary "$WORK/wrk" "$OUT"
}
