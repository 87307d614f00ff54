"""Parses wrk --latency outputs written by bench/gateway/run.sh and reports.

    report.py line FILE               one-line summary of one wrk run (progress output)
    report.py summary DIR OUT.json    table of medians, ratios against targets, JSON file

DIR holds files named ROW-cCONNS-tTHREADS-rRUN.txt (ROW: gateway, direct, nginx).
Environment passed through into the JSON: BENCH_SECONDS, BENCH_RUNS, BENCH_STRICT,
BENCH_META (a JSON object of extra facts, e.g. the URLs).
"""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from atek import (  # noqa: E402
    add_cpu, bench_meta, bench_settings, check, cpu_medians, cpu_progress, find_median,
    fmt_cpu, fmt_rps, fmt_us, medians, parse_wrk, print_checks, print_head, print_machine,
    print_progress, read_runs, report_main, write_result,
)

ROWS = ("gateway", "direct", "nginx")
ROW_HELP = {
    "gateway": "wrk -> atek gateway -> echo app ({upstream})",
    "direct": "wrk -> echo app (tcp)",
    "nginx": "wrk -> nginx, keepalive upstream -> echo app ({upstream})",
}
# Targets: gateway throughput at c=32 at least nginx's; gateway median latency at c=1
# at most 1.2x nginx's.
RPS_TARGET = 1.0
P50_TARGET = 1.2

NAME_RE = re.compile(r"^(?P<row>[a-z]+)-c(?P<conns>\d+)-t(?P<threads>\d+)-r(?P<run>\d+)\.txt$")


def line(path):
    r = parse_wrk(open(path).read())
    m = NAME_RE.match(os.path.basename(path))
    label = f"{m['row']:<8} c={m['conns']:<3} run {m['run']}" if m else path
    add_cpu(r, path)
    extra = cpu_progress(r, m["row"] if m else None)
    if r["non2xx"] or r["socket_errors"]:
        extra += f"  (non-2xx {r['non2xx']}, socket errors {r['socket_errors']})"
    print_progress(label, r, extra)
    return 0


def upstream_transport():
    """How the proxies reached the app (BENCH_UPSTREAM, passed in BENCH_META)."""
    return bench_meta().get("upstream", "tcp")


def summary(directory, out_path):
    # The gateway's results have no `bytes` per run (its answers are all the same size).
    def add(r, key, path):
        r.pop("bytes")
        add_cpu(r, path)

    runs = read_runs(directory, NAME_RE,
                     lambda m: (m["row"], int(m["conns"]), int(m["threads"])), add)

    rows = []
    for key in sorted(runs, key=lambda k: (k[1], ROWS.index(k[0]) if k[0] in ROWS else 99)):
        row, conns, threads = key
        rs = sorted(runs[key], key=lambda r: r["run"])
        rows.append({
            "row": row,
            "path": ROW_HELP.get(row, row).format(upstream=upstream_transport()),
            "connections": conns,
            "threads": threads,
            "runs": rs,
            "median": {**medians(rs), **cpu_medians(rs, row)},
            "non2xx": sum(r["non2xx"] for r in rs),
            "socket_errors": sum(r["socket_errors"] for r in rs),
        })

    def med(row, conns):
        return find_median(rows, row=row, connections=conns)

    seconds, n_runs = bench_settings()
    print_head(f"Gateway benchmark: JSON-RPC `echo`, loopback, median of {n_runs} runs x {seconds} s each",
               f"{'row':<8} {'conns':>5} {'threads':>7} {'req/s':>10} {'p50':>10} {'p99':>10} "
               f"{'proxy CPU':>10} {'app CPU':>9}   path",
               40)
    for r in rows:
        m = r["median"]
        flag = "  !! errors" if r["non2xx"] or r["socket_errors"] else ""
        print(f"{r['row']:<8} {r['connections']:>5} {r['threads']:>7} {fmt_rps(m['rps']):>10} "
              f"{fmt_us(m['p50_us']):>10} {fmt_us(m['p99_us']):>10} "
              f"{fmt_cpu(m['proxy_cpu_us_per_request']):>10} "
              f"{fmt_cpu(m['app_cpu_us_per_request']):>9}   {r['path']}{flag}")

    ratios = {}
    checks = []
    print()
    g32, n32, g1, n1 = med("gateway", 32), med("nginx", 32), med("gateway", 1), med("nginx", 1)
    if g32 and n32 and g1 and n1:
        rps_ratio = g32["rps"] / n32["rps"]
        p50_ratio = g1["p50_us"] / n1["p50_us"]
        ratios["gateway_over_nginx_rps_c32"] = rps_ratio
        ratios["gateway_over_nginx_p50_c1"] = p50_ratio
        checks.append(check("gateway/nginx req/s at c=32", rps_ratio, ">=", RPS_TARGET))
        checks.append(check("gateway/nginx p50 at c=1", p50_ratio, "<=", P50_TARGET))
    print_checks(checks, "gateway rows missing: no gateway/nginx ratios (targets not evaluated)")

    # For scale: how much each proxy costs over calling the app directly.
    d32, d1 = med("direct", 32), med("direct", 1)
    info = []
    for row in ("gateway", "nginx"):
        r32, r1 = med(row, 32), med(row, 1)
        if r32 and d32:
            ratios[f"{row}_over_direct_rps_c32"] = r32["rps"] / d32["rps"]
            info.append(f"{row}/direct req/s c=32 {r32['rps'] / d32['rps']:.2f}x")
        if r1 and d1:
            ratios[f"{row}_over_direct_p50_c1"] = r1["p50_us"] / d1["p50_us"]
            info.append(f"{row}/direct p50 c=1 {r1['p50_us'] / d1['p50_us']:.2f}x")
    if info:
        print("for scale: " + ", ".join(info))
    # The steadier signal on a busy machine: what each proxy spends per call.
    cpu = {row: (med(row, 32) or {}).get("proxy_cpu_us_per_request") for row in ("gateway", "nginx")}
    if cpu["gateway"] and cpu["nginx"]:
        ratios["gateway_over_nginx_cpu_c32"] = cpu["gateway"] / cpu["nginx"]
        print(f"CPU per call at c=32 (user + system, from /proc/PID/stat): gateway "
              f"{fmt_us(cpu['gateway'])}, nginx {fmt_us(cpu['nginx'])} "
              f"({cpu['gateway'] / cpu['nginx']:.2f}x)")

    # An unknown CPU has always been "" in the gateway's results.
    mach = print_machine(unknown_cpu="")

    errors = sum(r["non2xx"] + r["socket_errors"] for r in rows)
    if errors:
        print(f"WARNING: {errors} non-2xx responses or socket errors in total; see the raw runs in the JSON.")

    return write_result("gateway", out_path, mach, rows, ratios, checks, errors)


if __name__ == "__main__":
    sys.exit(report_main(sys.argv[1:], __doc__, line, summary))
