#!/usr/bin/env bash
# NAT lab: two hosts behind NAT routers reach each other with `atek beam`, through a relay
# on a pretend internet, all in network namespaces this script makes (and removes).
#
#   tests/natlab/run.sh            # needs root; installs nftables with apt-get if missing
#
# Topology (198.51.100.0/24 is a documentation range; nothing leaves the namespaces):
#
#   h1 10.0.1.2 -- 10.0.1.1 r1 198.51.100.11 --+
#                                              +-- br0 in "wan", the relay at 198.51.100.10
#   h2 10.0.2.2 -- 10.0.2.1 r2 198.51.100.12 --+
#
#   l1 10.9.0.1 ---- l2 10.9.0.2               a LAN with no router, relay or lookup server
#
# Cases:
#   cone       both routers masquerade (endpoint-independent mapping): the beam must go
#              direct ("Path: direct" on the connector) and carry 100 MB intact.
#   symmetric  both routers masquerade fully-random: hole punching cannot meet, the beam
#              must stay relayed and still carry 100 MB intact.
#   lan        l1 and l2 with no relay and no public lookup, only mDNS (`--mdns`): the
#              connector finds the listener by key on the LAN and goes direct.
# On each router new connections from the wan side are dropped (`ct state new drop`):
# without it Linux re-maps the punch probe's source port and punching never meets.
#
# Environment: NATLAB_MB=100 (size of each beam), ATEK_BIN (the atek binary; default: build
# it with the insecure-relay-tls feature off, as users get it), NATLAB_KEEP=1 keeps the
# temporary directory.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MB=${NATLAB_MB:-100}
ID="al$$"
NS=(wan r1 r2 h1 h2 l1 l2)

die() { echo "natlab: $*" >&2; exit 1; }
say() { echo "natlab: $*" >&2; }

[[ $(id -u) == 0 ]] || die "needs root (network namespaces); run it as root or skip this group"
if ! command -v nft >/dev/null; then
	say "installing nftables"
	if ! { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null; }; then
		die "nftables is missing and could not be installed"
	fi
fi
command -v ip >/dev/null || die "iproute2 (ip) is missing"

if [[ -z ${ATEK_BIN:-} ]]; then
	say "building atek"
	cargo build --quiet --manifest-path "$ROOT/Cargo.toml" -p atek-cli --bin atek
	ATEK_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/atek"
fi
[[ -x $ATEK_BIN ]] || die "no atek binary at $ATEK_BIN"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	# PIDS holds the subshells that ran `in_ns … &`; what they started (the relay, a listener
	# nobody dialed) runs on in its namespace, so everything still there is stopped too.
	local n left
	for n in "${NS[@]}"; do ip netns pids "$ID-$n" 2>/dev/null | xargs -r kill 2>/dev/null || true; done
	for _ in $(seq 50); do
		left=$(for n in "${NS[@]}"; do ip netns pids "$ID-$n" 2>/dev/null; done)
		[[ -z $left ]] && break
		sleep 0.1
	done
	[[ -z $left ]] || echo "$left" | xargs -r kill -KILL 2>/dev/null || true
	for n in "${NS[@]}"; do ip netns del "$ID-$n" 2>/dev/null || true; done
	if [[ ${NATLAB_KEEP:-0} == 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

in_ns() { local n=$1; shift; ip netns exec "$ID-$n" "$@"; }

# ---- the network ----
for n in "${NS[@]}"; do
	ip netns add "$ID-$n"
	in_ns "$n" ip link set lo up
done
in_ns wan ip link add br0 type bridge
in_ns wan ip addr add 198.51.100.10/24 dev br0
in_ns wan ip link set br0 up
for i in 1 2; do
	# router i: wan0 on the bridge, lan0 to its host
	ip link add "$ID-w$i" netns "$ID-wan" type veth peer name wan0 netns "$ID-r$i"
	in_ns wan ip link set "$ID-w$i" master br0 up
	in_ns "r$i" ip addr add "198.51.100.1$i/24" dev wan0
	in_ns "r$i" ip link set wan0 up
	ip link add lan0 netns "$ID-r$i" type veth peer name eth0 netns "$ID-h$i"
	in_ns "r$i" ip addr add "10.0.$i.1/24" dev lan0
	in_ns "r$i" ip link set lan0 up
	in_ns "r$i" sysctl -qw net.ipv4.ip_forward=1
	in_ns "h$i" ip addr add "10.0.$i.2/24" dev eth0
	in_ns "h$i" ip link set eth0 up
	in_ns "h$i" ip route add default via "10.0.$i.1"
done

# the LAN: one link, multicast routed onto it (mDNS sends to 224.0.0.251).
ip link add eth0 netns "$ID-l1" type veth peer name eth0 netns "$ID-l2"
for i in 1 2; do
	in_ns "l$i" ip addr add "10.9.0.$i/24" dev eth0
	in_ns "l$i" ip link set eth0 up
	in_ns "l$i" ip route add 224.0.0.0/4 dev eth0
done

# nat KIND: both routers masquerade (cone) or masquerade fully-random (symmetric).
nat() {
	local flags=""
	[[ $1 == symmetric ]] && flags="fully-random"
	for i in 1 2; do
		in_ns "r$i" nft flush ruleset
		in_ns "r$i" nft -f - <<-EOF
			table ip nat {
				chain postrouting {
					type nat hook postrouting priority 100;
					oifname "wan0" masquerade $flags
				}
			}
			table ip filter {
				chain input {
					type filter hook input priority 0;
					iifname "wan0" ct state new drop
				}
			}
		EOF
	done
}

# ---- the relay, on the pretend internet ----
mkdir -p "$WORK/relay"
in_ns wan "$ATEK_BIN" relay --self-signed "$WORK/relay" --hostname 198.51.100.10 \
	--https-port 8443 --http-port 8080 --quic-port 7842 >"$WORK/relay.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
	[[ -s $WORK/relay/cert.pem ]] && grep -q -- '--relay' "$WORK/relay.log" && break
	sleep 0.1
done
[[ -s $WORK/relay/cert.pem ]] || { cat "$WORK/relay.log" >&2; die "the relay did not start"; }
NET=(--relay https://198.51.100.10:8443 --relay-ca "$WORK/relay/cert.pem" --no-public --timeout 20)

head -c "$((MB << 20))" /dev/urandom >"$WORK/data"
WANT=$(sha256sum <"$WORK/data" | cut -d' ' -f1)

# passphrase CASE FILE: the passphrase a beam listener printed to FILE (its stderr), once
# it has (up to 30 s).
passphrase() {
	local pass=""
	for _ in $(seq 300); do
		pass=$(sed -n 's/^▶   atek beam //p' "$2" | head -n 1)
		[[ -n $pass ]] && break
		sleep 0.1
	done
	[[ -n $pass ]] || { cat "$2" >&2; die "$1: the listener printed no passphrase"; }
	echo "$pass"
}

# went_direct FILE: waits until the connector's stderr FILE says the path went direct (up to
# 20 s); fails if it never does.
went_direct() {
	for _ in $(seq 200); do
		grep -q '^▶ Path: direct' "$1" && return 0
		sleep 0.1
	done
	return 1
}

# beam CASE [A B [HOLD]]: A (default h1) waits with a new passphrase, B (default h2) connects
# and sends the data; checks the bytes by hash and prints the connector's path lines. NET
# holds the network flags of both. With HOLD=direct the connector's input stays open after
# the data until its path has gone direct (or 20 s went by): a fast relay can carry all the
# data before hole punching is done, and the case is about the punch, not the race.
beam() {
	local case=$1 a=${2:-h1} b=${3:-h2} hold=${4:-}
	: >"$WORK/$case-h1.err"
	in_ns "$a" env HOME="$WORK/$a" "$ATEK_BIN" --config-dir "$WORK/$a" beam "${NET[@]}" \
		</dev/null >"$WORK/$case-got" 2>"$WORK/$case-h1.err" &
	local listener=$!
	PIDS+=("$listener")
	local pass
	pass=$(passphrase "$case" "$WORK/$case-h1.err")
	local start=$SECONDS
	local rc=0
	{
		cat "$WORK/data"
		if [[ $hold == direct ]]; then went_direct "$WORK/$case-h2.err" || true; fi
	} | in_ns "$b" env HOME="$WORK/$b" "$ATEK_BIN" --config-dir "$WORK/$b" beam "$pass" "${NET[@]}" \
		>/dev/null 2>"$WORK/$case-h2.err" || rc=$?
	[[ $rc == 0 ]] || { cat "$WORK/$case-h2.err" >&2; die "$case: the connector failed"; }
	wait "$listener" || { cat "$WORK/$case-h1.err" >&2; die "$case: the listener failed"; }
	local got
	got=$(sha256sum <"$WORK/$case-got" | cut -d' ' -f1)
	[[ $got == "$WANT" ]] || die "$case: $MB MB arrived damaged (sha256 $got, sent $WANT)"
	say "$case: $MB MB intact in $((SECONDS - start)) s"
	grep '^▶ Path: ' "$WORK/$case-h2.err" >&2 || true
}

nat cone
beam cone h1 h2 direct
grep -q '^▶ Path: direct' "$WORK/cone-h2.err" || die "cone: the beam never went direct"

nat symmetric
beam symmetric
if grep -q '^▶ Path: direct' "$WORK/symmetric-h2.err"; then
	die "symmetric: the beam claims a direct path through two symmetric NATs"
fi
grep -q '^▶ Path: relayed' "$WORK/symmetric-h2.err" || die "symmetric: no relayed path reported"

# The control: without --mdns nothing finds the listener, and the connector gives up.
in_ns l1 env HOME="$WORK/l1" "$ATEK_BIN" --config-dir "$WORK/l1" beam --no-public \
	</dev/null >/dev/null 2>"$WORK/control.err" &
PIDS+=($!)
pass=$(passphrase "lan control" "$WORK/control.err")
if in_ns l2 env HOME="$WORK/l2" "$ATEK_BIN" --config-dir "$WORK/l2" beam "$pass" --no-public \
	--timeout 3 </dev/null >/dev/null 2>"$WORK/control-l2.err"; then
	die "lan control: the connector found the listener with no lookup at all"
fi
say "lan control: without mDNS the listener is not found"

NET=(--no-public --mdns --timeout 20)
beam lan l1 l2 direct
grep -q '^▶ Path: direct' "$WORK/lan-h2.err" || die "lan: the beam did not go direct"
say "all cases passed"
