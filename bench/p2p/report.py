"""Reports bench/p2p/run.sh's rows: bind and beam next to bare iroh and plain TCP.

    report.py line FILE               one-line summary of one row's run (progress)
    report.py summary DIR OUT.json    table of medians, ratios, targets, JSON result file

DIR holds ROW_PATH-rRUN.json files, each the JSON line atek-p2p-bench printed, or
{"row", "path", "failed": why} for a run that failed. BENCH_META (a JSON object of extra
facts) goes into the result; BENCH_STRICT=1 makes a missed target or a failed run exit 1.
"""

import json
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from atek import bench_meta, machine  # noqa: E402

NAME_RE = re.compile(r"^(?P<row>[a-z-]+)_(?P<path>[a-z-]+)-r(?P<run>\d+)\.json$")

# Table order, and what each row is.
ROWS = [
    ("tcp", "loopback", "plain TCP, one connection (for scale)"),
    ("iroh", "direct", "bare iroh: one QUIC stream, atek-net nodes (the ceiling)"),
    ("iroh", "relay", "bare iroh, atek-net nodes introduced by the relay"),
    ("iroh", "relay-only", "bare iroh, endpoints without IP transports: every byte via the relay"),
    ("bind", "direct", "TCP -> bind forward -> bind expose -> TCP sink"),
    ("bind", "relay", "the same, nodes introduced by the relay"),
    ("beam-lib", "direct", "atek_net::beam in one process, input -> output"),
    ("beam-lib", "relay", "the same, nodes introduced by the relay"),
    ("beam", "relay", "two `atek beam` processes, stdin -> stdout, start-up included"),
    ("connect", "direct", "Node::connect to established, fresh dialer given direct addresses"),
    ("connect", "relay", "Node::connect to established, fresh dialer given only the relay URL"),
]

# (label, numerator row, denominator row): the same path, within the run.
RATIOS = [
    ("tcp/iroh direct", ("tcp", "loopback"), ("iroh", "direct")),
    ("bind/iroh direct", ("bind", "direct"), ("iroh", "direct")),
    ("bind/iroh relay", ("bind", "relay"), ("iroh", "relay")),
    ("beam-lib/iroh direct", ("beam-lib", "direct"), ("iroh", "direct")),
    ("beam-lib/iroh relay", ("beam-lib", "relay"), ("iroh", "relay")),
    ("beam/iroh relay", ("beam", "relay"), ("iroh", "relay")),
    ("iroh relay-only/relay", ("iroh", "relay-only"), ("iroh", "relay")),
]

# The issue's targets: (name, kind, what, op, value). kind "ratio" reads RATIOS' label,
# kind "ms" a connect row's median.
TARGETS = [
    ("bind direct vs bare iroh", "ratio", "bind/iroh direct", ">=", 0.85),
    ("bind relay vs bare iroh", "ratio", "bind/iroh relay", ">=", 0.85),
    ("beam-lib direct vs bare iroh", "ratio", "beam-lib/iroh direct", ">=", 0.85),
    ("beam-lib relay vs bare iroh", "ratio", "beam-lib/iroh relay", ">=", 0.85),
    ("atek beam (start-up incl.) vs bare iroh", "ratio", "beam/iroh relay", ">=", 0.85),
    ("connect direct, median", "ms", ("connect", "direct"), "<=", 10),
    ("connect via relay, median", "ms", ("connect", "relay"), "<=", 10),
]

# The phases of `beam` (seconds after the listener was started), in order.
PHASES = ["listener_ready", "connector_started", "connector_connected", "listener_connected",
          "first_byte", "last_byte", "both_exited"]


def read_rows(directory):
    """{(row, path): [result, ...]}, each with its `run`."""
    out = {}
    for name in sorted(os.listdir(directory)):
        m = NAME_RE.match(name)
        if not m:
            continue
        with open(os.path.join(directory, name)) as f:
            text = f.read().strip().splitlines()
        r = json.loads(text[-1]) if text else {"failed": "no output"}
        r.setdefault("row", m["row"])
        r.setdefault("path", m["path"])
        r["run"] = int(m["run"])
        out.setdefault((m["row"], m["path"]), []).append(r)
    return out


def fmt(unit, v):
    if v is None:
        return "-"
    if unit == "ms":
        return f"{v:.2f} ms"
    return f"{v:,.0f}"


def cpu_total(r):
    c = r.get("cpu_s")
    if isinstance(c, dict):
        return sum(c.values())
    return c


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs):
    ok = [r for r in runs if "failed" not in r]
    s = {"row": runs[0]["row"], "path": runs[0]["path"],
         "runs": sorted(runs, key=lambda r: r["run"]),
         "failed": [r["failed"] for r in runs if "failed" in r]}
    if not ok:
        return s
    s["unit"] = ok[0]["unit"]
    s["value"] = med([r["value"] for r in ok])
    s["relayed"] = med([r.get("relayed") for r in ok])
    s["cpu_s"] = med([cpu_total(r) for r in ok])
    if s["row"] == "connect":
        s["min_ms"] = min(r["min_ms"] for r in ok)
        s["max_ms"] = max(r["max_ms"] for r in ok)
        s["again_ms"] = med([r.get("again_ms") for r in ok])
        paths = {}
        for r in ok:
            for p, n in r.get("selected_path_at_connect", {}).items():
                paths[p] = paths.get(p, 0) + n
        s["selected_path_at_connect"] = paths
    if s["row"] == "beam":
        s["phases"] = {p: med([r["phases"].get(p) for r in ok]) for p in PHASES}
        s["transfer_mib_s"] = med([r.get("transfer_mib_s") for r in ok])
        s["cpu_parts"] = {k: med([r["cpu_s"][k] for r in ok]) for k in ok[0]["cpu_s"]}
    if s["row"] in ("beam-lib",):
        s["connect_ms"] = med([r.get("connect_ms") for r in ok])
    if s["row"] == "iroh":
        s["selected_path_at_end"] = sorted({r.get("selected_path_at_end") for r in ok})
    return s


def line(path):
    with open(path) as f:
        text = f.read().strip().splitlines()
    m = NAME_RE.match(os.path.basename(path))
    label = f"{m['row']} {m['path']} run {m['run']}" if m else path
    r = json.loads(text[-1]) if text else {"failed": "no output"}
    if "failed" in r:
        print(f"  {label}: FAILED: {r['failed']}", flush=True)
        return 0
    extra = ""
    if r.get("relayed") is not None:
        extra += f", relayed {r['relayed']:.2f}x"
    if r["row"] == "connect":
        extra += f" (min {r['min_ms']:.2f}, max {r['max_ms']:.2f}, again {r['again_ms']:.2f} ms)"
    if r["row"] == "beam":
        extra += f", transfer alone {r['transfer_mib_s']:,.0f} MiB/s"
    unit = "" if r["unit"] == "ms" else " MiB/s"
    print(f"  {label}: {fmt(r['unit'], r['value'])}{unit}{extra}", flush=True)
    return 0


def connect_table(rows, meta):
    print()
    print(f"{'row':<9} {'path':<11} {'median':>10} {'min':>10} {'max':>10} {'again':>10}   path at connect")
    print("-" * 120)
    for name, path, what in ROWS:
        s = rows.get((name, path))
        if s is None or name != "connect":
            continue
        if "value" not in s:
            print(f"{name:<9} {path:<11} {'failed':>10}   {s['failed'][0]}")
            continue
        seen = ", ".join(f"{p} {n}" for p, n in sorted(s["selected_path_at_connect"].items()))
        print(f"{name:<9} {path:<11} {fmt('ms', s['value']):>10} {fmt('ms', s['min_ms']):>10} "
              f"{fmt('ms', s['max_ms']):>10} {fmt('ms', s['again_ms']):>10}   {seen}")
    n_conn = meta.get("connects", "?")
    print(f"{n_conn} samples per run, each from a fresh dialing node already up; again: a second "
          f"connect from the same dialer.")


def summary(directory, out_path):
    raw = read_rows(directory)
    rows = {k: summarize(v) for k, v in raw.items()}
    runs_per_row = max((len(s["runs"]) for s in rows.values()), default=0)
    meta = bench_meta()

    def value(key):
        s = rows.get(key)
        return None if s is None else s.get("value")

    ratios = {}
    for label, num, den in RATIOS:
        a, b = value(num), value(den)
        if a is not None and b:
            ratios[label] = a / b

    print()
    mib = meta.get("mib", "?")
    print(f"P2P benchmark: {mib} MiB per copy, on loopback, median of {runs_per_row} run(s)")
    header = f"{'row':<9} {'path':<11} {'MiB/s':>9} {'x iroh':>8} {'relayed':>8} {'CPU s':>7}   what"
    print(header)
    print("-" * 120)
    for name, path, what in ROWS:
        s = rows.get((name, path))
        if s is None or name == "connect":
            continue
        if "value" not in s:
            print(f"{name:<9} {path:<11} {'failed':>9}   {s['failed'][0]}")
            continue
        den = ("iroh", "direct") if path in ("direct", "loopback") else ("iroh", "relay")
        x = value(den)
        xs = f"{s['value'] / x:.2f}x" if x else "-"
        if (name, path) == ("iroh", "relay-only"):
            xs = "-"
        rel = "-" if s["relayed"] is None else f"{s['relayed']:.2f}x"
        cpu = "-" if s["cpu_s"] is None else f"{s['cpu_s']:.2f}"
        print(f"{name:<9} {path:<11} {s['value']:>9,.0f} {xs:>8} {rel:>8} {cpu:>7}   {what}")
    print("x iroh: over bare iroh of the same path (tcp: over iroh direct). relayed: bytes the relay took")
    print("from its clients over the bytes copied (~1.0x: all through the relay; ~0: direct after the start).")
    print("CPU s: this process's CPU for the copy (beam: both atek processes and this one, relay included).")

    if any(k[0] == "connect" for k in rows):
        connect_table(rows, meta)

    beam = rows.get(("beam", "relay"))
    if beam and "phases" in beam:
        p = beam["phases"]
        print()
        print("atek beam, where the time goes (median seconds after the listener was started):")
        print("  " + ", ".join(f"{k} {p[k]:.3f}" for k in PHASES if p.get(k) is not None))
        c = beam["cpu_parts"]
        print(f"  transfer alone (first to last byte): {beam['transfer_mib_s']:,.0f} MiB/s; CPU s: "
              + ", ".join(f"{k} {v:.2f}" for k, v in c.items()))

    # CPU per byte moved moves much less than MiB/s on a shared machine: the same rows'
    # CPU seconds (for the same MiB) over bare iroh's.
    cpu_ratios = {}
    for label, num, den in RATIOS:
        a, b = rows.get(num, {}).get("cpu_s"), rows.get(den, {}).get("cpu_s")
        if a is not None and b and num[0] != "tcp":
            cpu_ratios[label] = a / b

    print()
    print("ratios (medians of the same run): MiB/s, and CPU seconds for the same bytes")
    for label, _, _ in RATIOS:
        if label in ratios:
            cpu = f"{cpu_ratios[label]:.2f}x" if label in cpu_ratios else "-"
            print(f"  {label:<26} {ratios[label]:.2f}x   CPU {cpu}")

    checks = []
    print()
    for name, kind, what, op, target in TARGETS:
        if kind == "ratio":
            v = ratios.get(what)
            shown = "-" if v is None else f"{v:.2f}x"
            unit = "x"
        else:
            v = value(what)
            shown = "-" if v is None else f"{v:.2f} ms"
            unit = " ms"
        if v is None:
            status, met = "not measured", False
        else:
            met = v >= target if op == ">=" else v <= target
            status = "MET" if met else "MISSED"
        checks.append({"name": name, "target": f"{op} {target}{unit}", "value": v, "met": met,
                       "status": status})
        print(f"{name:<42} {shown:>10}   target {op} {target}{unit:<4} {status}")

    failed = [(k, f) for k, s in rows.items() for f in s["failed"]]
    for (name, path), why in failed:
        print(f"FAILED run of {name} {path}: {why}")
    mach = machine()
    print(f"machine: {mach['cpus']} CPUs ({mach['cpu'] or 'unknown CPU'}), load average "
          f"{mach['loadavg_at_end'][0]:.2f} at the end. CPUs are shared: compare figures from "
          f"one run, not across runs.")

    result = {
        "benchmark": "p2p",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs_per_row": runs_per_row,
        "machine": mach,
        "meta": meta,
        "rows": list(rows.values()),
        "ratios": ratios,
        "cpu_ratios": cpu_ratios,
        "checks": checks,
        "failed_runs": len(failed),
        "all_met": bool(checks) and all(c["met"] for c in checks) and not failed,
    }
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"wrote {out_path}")
    if os.environ.get("BENCH_STRICT") == "1" and not result["all_met"]:
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
