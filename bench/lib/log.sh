# shellcheck shell=bash
# log and die, for every benchmark script (sourced by common.sh and data.sh).

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
	printf '[bench] error: %s\n' "$*" >&2
	exit 1
}
