"""Parses the wrk --latency outputs written by bench/proxy/run.sh and reports.

    report.py line FILE               one-line summary of one wrk run (progress output);
                                      exit 3 if the run had a failed request
    report.py summary DIR OUT.json    table of medians, ratios against targets, JSON file

DIR holds files named ROW-sSIZE-cCONNS-tTHREADS-rRUN.txt (ROW: proxy, direct, nginx;
SIZE: the body size in bytes of `GET /bytes/SIZE`), each with a FILE.cpu next to it:
"PROXY_TICKS APP_TICKS CLK_TCK", the CPU time the proxy and the app used in that run. Environment passed through into the
JSON: BENCH_SECONDS, BENCH_RUNS, BENCH_STRICT, BENCH_META (a JSON object of extra facts).

A run fails when wrk saw an error status (>= 400), a socket error, or when the bytes it
read per request do not fit SIZE: wrk counts a 3xx as a success, so a redirect to a login
page would otherwise be measured as a fast answer.
"""

import json
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from atek import fmt_rps, fmt_us, machine, parse_wrk  # noqa: E402

ROWS = ("proxy", "direct", "nginx")
ROW_HELP = {
    "proxy": "atek subdomain proxy (cookie) -> app socket",
    "direct": "app over tcp",
    "nginx": "nginx (keepalive upstream) -> app socket",
}
# Targets (the issue's): at c=32 the proxy does at least nginx's req/s; its p99 is at most
# 1.2x nginx's, at every concurrency measured. For every body size.
RPS_TARGET = 1.0
P99_TARGET = 1.2
# Response headers are not counted in SIZE: allow this much on top, per response.
HEADER_ALLOWANCE = 2048

NAME_RE = re.compile(
    r"^(?P<row>[a-z]+)-s(?P<size>\d+)-c(?P<conns>\d+)-t(?P<threads>\d+)-r(?P<run>\d+)\.txt$"
)


def fmt_size(n):
    for unit, scale in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def problems(r, size, conns):
    """Why a parsed run cannot count as `size`-byte 200 answers, or []."""
    out = []
    if r["non2xx"]:
        out.append(f"{r['non2xx']} responses with status >= 400")
    if r["socket_errors"]:
        out.append(f"{r['socket_errors']} socket errors")
    if not r["requests"]:
        out.append("no request completed")
    elif r["bytes"] is None:
        out.append("no 'read' total in wrk's output")
    else:
        # wrk prints the total with 2 decimals (e.g. 4.33GB): allow 1% for that. The
        # total also holds the answers still in flight when wrk stopped (one per connection).
        low = r["requests"] * size * 0.99
        high = (r["requests"] + conns) * (size + HEADER_ALLOWANCE) * 1.01
        if not low <= r["bytes"] <= high:
            per = r["bytes"] / r["requests"]
            out.append(f"{per:,.0f} bytes read per response for a {size}-byte body "
                       "(redirects or error pages?)")
    return out


def add_cpu(r, path):
    """Adds proxy_cpu_us and app_cpu_us (CPU time per completed request) from FILE.cpu."""
    try:
        proxy, app, tck = (int(x) for x in open(path + ".cpu").read().split())
    except (OSError, ValueError):
        return
    if r["requests"] and tck:
        r["proxy_cpu_us"] = proxy * 1e6 / tck / r["requests"]
        r["app_cpu_us"] = app * 1e6 / tck / r["requests"]


def fmt_cpu(us):
    return "-" if us is None else fmt_us(us)


def line(path):
    try:
        r = parse_wrk(open(path).read())
    except ValueError as e:
        print(f"  {path}: FAILED: cannot read wrk's output: {e}", flush=True)
        return 3
    m = NAME_RE.match(os.path.basename(path))
    add_cpu(r, path)
    cpu = ""
    if "proxy_cpu_us" in r:
        cpu = f"  CPU/req: app {fmt_us(r['app_cpu_us'])}"
        if m and m["row"] != "direct":
            cpu += f", {m['row']} {fmt_us(r['proxy_cpu_us'])}"
    if m:
        label = f"{m['row']:<6} {fmt_size(int(m['size'])):>5} c={m['conns']:<3} run {m['run']}"
        bad = problems(r, int(m["size"]), int(m["conns"]))
    else:
        label, bad = path, []
    extra = f"  FAILED: {'; '.join(bad)}" if bad else ""
    print(f"  {label}: {fmt_rps(r['rps']):>9} req/s  p50 {fmt_us(r['p50_us']):>9}  "
          f"p99 {fmt_us(r['p99_us']):>9}{cpu}{extra}", flush=True)
    return 3 if bad else 0


def summary(directory, out_path):
    runs = {}
    for name in sorted(os.listdir(directory)):
        m = NAME_RE.match(name)
        if not m:
            continue
        key = (m["row"], int(m["size"]), int(m["conns"]), int(m["threads"]))
        parsed = parse_wrk(open(os.path.join(directory, name)).read())
        parsed["run"] = int(m["run"])
        parsed["problems"] = problems(parsed, key[1], key[2])
        add_cpu(parsed, os.path.join(directory, name))
        runs.setdefault(key, []).append(parsed)

    def order(k):
        return (k[1], k[2], ROWS.index(k[0]) if k[0] in ROWS else 99)

    rows = []
    for key in sorted(runs, key=order):
        row, size, conns, threads = key
        rs = sorted(runs[key], key=lambda r: r["run"])

        def median_of(field, rs=rs, row=row):
            values = [r[field] for r in rs if field in r]
            if not values or (field == "proxy_cpu_us" and row == "direct"):
                return None
            return statistics.median(values)

        rows.append({
            "row": row,
            "path": ROW_HELP.get(row, row),
            "size": size,
            "connections": conns,
            "threads": threads,
            "runs": rs,
            "median": {
                "rps": statistics.median(r["rps"] for r in rs),
                "p50_us": statistics.median(r["p50_us"] for r in rs),
                "p99_us": statistics.median(r["p99_us"] for r in rs),
                "proxy_cpu_us_per_request": median_of("proxy_cpu_us"),
                "app_cpu_us_per_request": median_of("app_cpu_us"),
            },
            "failed_runs": sum(1 for r in rs if r["problems"]),
        })

    def med(row, size, conns):
        for r in rows:
            if (r["row"], r["size"], r["connections"]) == (row, size, conns):
                return r["median"]
        return None

    seconds = os.environ.get("BENCH_SECONDS", "?")
    n_runs = os.environ.get("BENCH_RUNS", "?")
    print()
    print(f"Proxy benchmark: GET /bytes/SIZE, loopback, median of {n_runs} runs x {seconds} s each")
    header = (f"{'row':<6} {'size':>5} {'conns':>5} {'threads':>7} {'req/s':>9} {'MiB/s':>8} "
              f"{'p50':>9} {'p99':>9} {'proxy CPU':>10} {'app CPU':>9}   path")
    print(header)
    print("-" * (len(header) + 38))
    last = None
    for r in rows:
        if last is not None and (r["size"], r["connections"]) != last:
            print()
        last = (r["size"], r["connections"])
        m = r["median"]
        mib = m["rps"] * r["size"] / (1 << 20)
        flag = "  !! failed runs" if r["failed_runs"] else ""
        print(f"{r['row']:<6} {fmt_size(r['size']):>5} {r['connections']:>5} {r['threads']:>7} "
              f"{fmt_rps(m['rps']):>9} {mib:>8,.0f} {fmt_us(m['p50_us']):>9} "
              f"{fmt_us(m['p99_us']):>9} {fmt_cpu(m['proxy_cpu_us_per_request']):>10} "
              f"{fmt_cpu(m['app_cpu_us_per_request']):>9}   {r['path']}{flag}")

    sizes = sorted({r["size"] for r in rows})
    conns_all = sorted({r["connections"] for r in rows})
    ratios = {}
    checks = []
    print()
    for size in sizes:
        p32, n32 = med("proxy", size, 32), med("nginx", size, 32)
        if not (p32 and n32):
            continue
        value = p32["rps"] / n32["rps"]
        ratios[f"proxy_over_nginx_rps_c32_s{size}"] = value
        checks.append({"name": f"proxy/nginx req/s {fmt_size(size)} c=32", "value": value,
                       "target": f">= {RPS_TARGET}", "met": value >= RPS_TARGET})
        for conns in conns_all:
            p, n = med("proxy", size, conns), med("nginx", size, conns)
            if not (p and n):
                continue
            value = p["p99_us"] / n["p99_us"]
            ratios[f"proxy_over_nginx_p99_c{conns}_s{size}"] = value
            checks.append({"name": f"proxy/nginx p99 {fmt_size(size)} c={conns}", "value": value,
                           "target": f"<= {P99_TARGET}", "met": value <= P99_TARGET})
    if checks:
        for c in checks:
            print(f"{c['name']:<32} {c['value']:6.2f}x   target {c['target']:<7} "
                  f"{'MET' if c['met'] else 'MISSED'}")
    else:
        print("proxy rows missing: no proxy/nginx ratios (targets not evaluated)")

    # For scale: how much each proxy costs over asking the app directly.
    for size in sizes:
        d32 = med("direct", size, 32)
        info = []
        for row in ("proxy", "nginx"):
            r32 = med(row, size, 32)
            if r32 and d32:
                value = r32["rps"] / d32["rps"]
                ratios[f"{row}_over_direct_rps_c32_s{size}"] = value
                info.append(f"{row}/direct req/s c=32 {value:.2f}x")
        if info:
            print(f"for scale, {fmt_size(size)}: " + ", ".join(info))

    print("CPU columns: CPU time (user + system) per request of the proxy process(es) and of "
          "the app, from /proc/PID/stat; steadier than req/s on a busy machine.")
    mach = machine()
    print(f"machine: {mach['cpus']} CPUs ({mach['cpu'] or 'unknown CPU'}), load average "
          f"{mach['loadavg_at_end'][0]:.2f} at the end. wrk, the proxies and the app share "
          f"these CPUs: compare ratios from one run, not absolute numbers across runs.")

    failed = sum(r["failed_runs"] for r in rows)
    if failed:
        print(f"WARNING: {failed} runs had failed requests; see `problems` in the JSON.")

    try:
        meta = json.loads(os.environ.get("BENCH_META", "{}"))
    except ValueError:
        meta = {}
    result = {
        "benchmark": "proxy",
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

    if os.environ.get("BENCH_STRICT") == "1" and (not result["all_met"] or failed):
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
