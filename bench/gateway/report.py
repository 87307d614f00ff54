"""Parses wrk --latency outputs written by bench/gateway/run.sh and reports.

    report.py line FILE               one-line summary of one wrk run (progress output)
    report.py summary DIR OUT.json    table of medians, ratios against targets, JSON file

DIR holds files named ROW-cCONNS-tTHREADS-rRUN.txt (ROW: gateway, direct, nginx).
Environment passed through into the JSON: BENCH_SECONDS, BENCH_RUNS, BENCH_STRICT,
BENCH_META (a JSON object of extra facts, e.g. the URLs).
"""

import json
import os
import platform
import re
import statistics
import sys
import time

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

UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
NAME_RE = re.compile(r"^(?P<row>[a-z]+)-c(?P<conns>\d+)-t(?P<threads>\d+)-r(?P<run>\d+)\.txt$")


def parse_wrk(text):
    """Returns {rps, p50_us, p99_us, requests, non2xx, socket_errors} from wrk --latency output."""

    def number(pattern):
        m = re.search(pattern, text, re.M)
        return m and m.group(1)

    def latency(pct):
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
        if not m:
            raise ValueError(f"no {pct}% latency line in wrk output")
        return float(m.group(1)) * UNITS_US[m.group(2)]

    rps = number(r"^Requests/sec:\s+([\d.]+)")
    if rps is None:
        raise ValueError("no Requests/sec line in wrk output")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return {
        "rps": float(rps),
        "p50_us": latency(50),
        "p99_us": latency(99),
        "requests": int(number(r"^\s*(\d+) requests in ") or 0),
        "non2xx": int(number(r"Non-2xx or 3xx responses: (\d+)") or 0),
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
    }


def fmt_us(us):
    if us < 1000:
        return f"{us:.0f} µs"
    if us < 1e6:
        return f"{us / 1000:.2f} ms"
    return f"{us / 1e6:.2f} s"


def fmt_rps(rps):
    return f"{rps:,.0f}"


def line(path):
    r = parse_wrk(open(path).read())
    m = NAME_RE.match(os.path.basename(path))
    label = f"{m['row']:<8} c={m['conns']:<3} run {m['run']}" if m else path
    extra = ""
    if r["non2xx"] or r["socket_errors"]:
        extra = f"  (non-2xx {r['non2xx']}, socket errors {r['socket_errors']})"
    print(f"  {label}: {fmt_rps(r['rps']):>9} req/s  p50 {fmt_us(r['p50_us']):>9}  "
          f"p99 {fmt_us(r['p99_us']):>9}{extra}", flush=True)
    return 0


def machine():
    cpu = ""
    try:
        for text_line in open("/proc/cpuinfo"):
            if text_line.startswith("model name"):
                cpu = text_line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "loadavg_at_end": list(os.getloadavg()),
    }


def upstream_transport():
    """How the proxies reached the app (BENCH_UPSTREAM, passed in BENCH_META)."""
    try:
        return json.loads(os.environ.get("BENCH_META", "{}")).get("upstream", "tcp")
    except ValueError:
        return "tcp"


def summary(directory, out_path):
    runs = {}
    for name in sorted(os.listdir(directory)):
        m = NAME_RE.match(name)
        if not m:
            continue
        key = (m["row"], int(m["conns"]), int(m["threads"]))
        parsed = parse_wrk(open(os.path.join(directory, name)).read())
        parsed["run"] = int(m["run"])
        runs.setdefault(key, []).append(parsed)

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
            "median": {
                "rps": statistics.median(r["rps"] for r in rs),
                "p50_us": statistics.median(r["p50_us"] for r in rs),
                "p99_us": statistics.median(r["p99_us"] for r in rs),
            },
            "non2xx": sum(r["non2xx"] for r in rs),
            "socket_errors": sum(r["socket_errors"] for r in rs),
        })

    def med(row, conns):
        for r in rows:
            if r["row"] == row and r["connections"] == conns:
                return r["median"]
        return None

    seconds = os.environ.get("BENCH_SECONDS", "?")
    n_runs = os.environ.get("BENCH_RUNS", "?")
    print()
    print(f"Gateway benchmark: JSON-RPC `echo`, loopback, median of {n_runs} runs x {seconds} s each")
    header = f"{'row':<8} {'conns':>5} {'threads':>7} {'req/s':>10} {'p50':>10} {'p99':>10}   path"
    print(header)
    print("-" * len(header) + "-" * 40)
    for r in rows:
        m = r["median"]
        flag = "  !! errors" if r["non2xx"] or r["socket_errors"] else ""
        print(f"{r['row']:<8} {r['connections']:>5} {r['threads']:>7} {fmt_rps(m['rps']):>10} "
              f"{fmt_us(m['p50_us']):>10} {fmt_us(m['p99_us']):>10}   {r['path']}{flag}")

    ratios = {}
    checks = []
    print()
    g32, n32, g1, n1 = med("gateway", 32), med("nginx", 32), med("gateway", 1), med("nginx", 1)
    if g32 and n32 and g1 and n1:
        rps_ratio = g32["rps"] / n32["rps"]
        p50_ratio = g1["p50_us"] / n1["p50_us"]
        ratios["gateway_over_nginx_rps_c32"] = rps_ratio
        ratios["gateway_over_nginx_p50_c1"] = p50_ratio
        checks.append({
            "name": "gateway/nginx req/s at c=32", "value": rps_ratio,
            "target": f">= {RPS_TARGET}", "met": rps_ratio >= RPS_TARGET,
        })
        checks.append({
            "name": "gateway/nginx p50 at c=1", "value": p50_ratio,
            "target": f"<= {P50_TARGET}", "met": p50_ratio <= P50_TARGET,
        })
        for c in checks:
            print(f"{c['name']:<32} {c['value']:6.2f}x   target {c['target']:<7} "
                  f"{'MET' if c['met'] else 'MISSED'}")
    else:
        print("gateway rows missing: no gateway/nginx ratios (targets not evaluated)")

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

    mach = machine()
    print(f"machine: {mach['cpus']} CPUs ({mach['cpu'] or 'unknown CPU'}), load average "
          f"{mach['loadavg_at_end'][0]:.2f} at the end. wrk, the proxies and the app share "
          f"these CPUs: compare ratios from one run, not absolute numbers across runs.")

    errors = sum(r["non2xx"] + r["socket_errors"] for r in rows)
    if errors:
        print(f"WARNING: {errors} non-2xx responses or socket errors in total; see the raw runs in the JSON.")

    try:
        meta = json.loads(os.environ.get("BENCH_META", "{}"))
    except ValueError:
        meta = {}
    result = {
        "benchmark": "gateway",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds_per_run": float(seconds) if seconds.replace(".", "", 1).isdigit() else seconds,
        "runs_per_row": int(n_runs) if n_runs.isdigit() else n_runs,
        "machine": mach,
        "meta": meta,
        "rows": rows,
        "ratios": ratios,
        "checks": checks,
        "all_met": bool(checks) and all(c["met"] for c in checks),
    }
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"wrote {out_path}")

    if os.environ.get("BENCH_STRICT") == "1" and (not result["all_met"] or errors):
        return 1
    return 0


def main(argv):
    if len(argv) == 2 and argv[0] == "line":
        return line(argv[1])
    if len(argv) == 3 and argv[0] == "summary":
        return summary(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
