"""The report of the data layer's benchmarks (bench/adb/report.py, bench/log/report.py).

Each benchmark run writes JSON lines, one per workload, into DIR/SYSTEM-rRUN.jsonl (rows of
atek-data-bench, hyperbee.mjs or hypercore.mjs; see bench/lib/data.mjs for their fields). A
row that could not be measured is {"system", "workload", "not_measured": why}. This module
turns them into a table of medians, ratios between systems, target checks and the result
file. A benchmark gives a Config: its systems in column order, its workloads, its ratios
and its targets.
"""

import json
import os
import re
import statistics
import sys
import time

from atek import bench_meta, fmt_us, machine

NAME_RE = re.compile(r"^(?P<system>[a-z0-9-]+)-r(?P<run>\d+)\.jsonl$")

# What each (workload, field) row of the table shows: its label and how to format it.
MEASURES = {
    "value": None,  # the workload's unit
    "p50_us": "p50",
    "p99_us": "p99",
    "written_per_entry": "written/entry",
    "entries_per_s": "entries/s",
    "wire_per_entry_byte": "wire/data",
}


class Config:
    """name: the benchmark; systems: column order; workloads: row order; ratios: (label,
    numerator system, denominator system); targets: Target list; title: the table's title."""

    def __init__(self, name, title, systems, workloads, ratios, targets):
        self.name, self.title = name, title
        self.systems, self.workloads = systems, workloads
        self.ratios, self.targets = ratios, targets


class Target:
    """`system`'s median `field` of `workload` must be `op` (">=" or "<=") `value`.
    `durable`: the figure counts only if the system's writes are D1 (fsynced). `records`:
    the target is for this many prefilled records."""

    def __init__(self, name, system, workload, op, value, unit, field="value", durable=False,
                 records=None):
        self.name, self.system, self.workload = name, system, workload
        self.op, self.value, self.unit, self.field = op, value, unit, field
        self.durable, self.records = durable, records


def read_rows(directory):
    """{(system, workload): [row, ...]} from DIR/SYSTEM-rRUN.jsonl, each row with its `run`."""
    out = {}
    for name in sorted(os.listdir(directory)):
        m = NAME_RE.match(name)
        if not m:
            continue
        with open(os.path.join(directory, name)) as f:
            for text in f:
                if not text.strip():
                    continue
                row = json.loads(text)
                row["run"] = int(m["run"])
                out.setdefault((row["system"], row["workload"]), []).append(row)
    return out


def fmt_value(unit, v):
    if v is None:
        return "-"
    if unit in ("ms", "MB/s"):
        return f"{v:,.1f}"
    if unit == "wire/data":
        return f"{v:.3f}"
    return f"{v:,.0f}"


def summarize(runs):
    """One row per (system, workload): its runs and the medians of its measures."""
    first = runs[0]
    if "not_measured" in first:
        return {"system": first["system"], "workload": first["workload"],
                "not_measured": first["not_measured"], "runs": runs}
    median = {}
    for field in MEASURES:
        values = [r[field] for r in runs if r.get(field) is not None]
        if values:
            median[field] = statistics.median(values)
    return {
        "system": first["system"],
        "workload": first["workload"],
        "unit": first["unit"],
        "durability": first["durability"],
        "cut": any(r.get("cut") for r in runs),
        "records": first.get("records"),
        "median": median,
        "runs": sorted(runs, key=lambda r: r["run"]),
    }


def line(path):
    """The progress line of one invocation's rows."""
    m = NAME_RE.match(os.path.basename(path))
    parts = []
    with open(path) as f:
        for text in f:
            if not text.strip():
                continue
            r = json.loads(text)
            if "not_measured" in r:
                parts.append(f"{r['workload']} not measured")
                continue
            extra = f" p50 {fmt_us(r['p50_us'])}" if "p50_us" in r else ""
            cut = " (cut)" if r.get("cut") else ""
            parts.append(f"{r['workload']} {fmt_value(r['unit'], r['value'])} {r['unit']}{extra}{cut}")
    label = f"{m['system']} run {m['run']}" if m else path
    print(f"  {label}: " + "; ".join(parts), flush=True)
    return 0


def cell(summary, field):
    if summary is None:
        return "-"
    if "not_measured" in summary:
        return "not measured"
    v = summary["median"].get(field)
    if v is None:
        return "-"
    if field in ("p50_us", "p99_us"):
        return fmt_us(v)
    text = fmt_value(summary["unit"] if field == "value" else MEASURES[field], v)
    return text + ("*" if summary["cut"] and field == "value" else "")


def summary(config, directory, out_path):
    raw = read_rows(directory)
    rows = {key: summarize(runs) for key, runs in raw.items()}
    systems = [s for s in config.systems if any(k[0] == s for k in rows)]
    runs_per_row = max((len(r["runs"]) for r in rows.values()), default=0)

    def get(system, workload):
        return rows.get((system, workload))

    def median(system, workload, field="value"):
        r = get(system, workload)
        if r is None or "not_measured" in r:
            return None
        return r["median"].get(field)

    width = max(14, *(len(s) + 2 for s in systems))
    ratio_w = max([10] + [len(label) + 2 for label, _, _ in config.ratios])
    header = f"{'workload':<14} {'measure':<14}" + "".join(f"{s:>{width}}" for s in systems)
    header += "".join(f"{label:>{ratio_w}}" for label, _, _ in config.ratios)
    print()
    print(f"{config.title}, median of {runs_per_row} run(s)")
    print(header)
    print("-" * len(header))
    ratios = {}
    for workload in config.workloads:
        present = [(s, get(s, workload)) for s in systems]
        if all(r is None for _, r in present):
            continue
        unit = next((r["unit"] for _, r in present if r and "unit" in r), "")
        for field, label in MEASURES.items():
            if not any(r and "median" in r and field in r["median"] for _, r in present):
                if field != "value":
                    continue
            label = unit if field == "value" else label
            text = f"{workload:<14} {label:<14}" + "".join(f"{cell(r, field):>{width}}" for _, r in present)
            for name, num, den in config.ratios:
                a, b = median(num, workload, field), median(den, workload, field)
                if a is not None and b:
                    ratios[f"{num}/{den} {workload} {field}"] = a / b
                    text += f"{a / b:>{ratio_w - 1}.2f}x"
                else:
                    text += f"{'-':>{ratio_w}}"
            print(text)
    if any(r.get("cut") for r in rows.values()):
        print("* cut: some runs stopped at BENCH_MAX_SECONDS before their count (the rate is still over what was done)")

    print()
    print("durability (what an acknowledged write survives):")
    for s in systems:
        # A system's rows may differ (the log's replication rows are about its replica): each
        # durability once, with its workloads when there is more than one.
        kinds = {}
        for w in config.workloads:
            r = rows.get((s, w))
            if r and "durability" in r:
                kinds.setdefault(r["durability"], []).append(w)
        for d, workloads in kinds.items():
            which = f" ({', '.join(workloads)})" if len(kinds) > 1 else ""
            print(f"  {s:<16} {d}{which}")
    missing = sorted({(r["system"], r["not_measured"]) for r in rows.values() if "not_measured" in r})
    for s, why in missing:
        workloads = [k[1] for k, r in rows.items() if k[0] == s and "not_measured" in r]
        print(f"  {s:<16} not measured ({', '.join(workloads)}): {why}")

    checks = []
    print()
    for t in config.targets:
        r = get(t.system, t.workload)
        c = {"name": t.name, "target": f"{t.op} {t.value:,} {t.unit}", "met": False}
        if r is None:
            c["status"] = "not run"
        elif "not_measured" in r:
            c["status"] = f"not measured: {r['not_measured']}"
        else:
            v = r["median"].get(t.field)
            c["value"] = v
            ok = v is not None and (v >= t.value if t.op == ">=" else v <= t.value)
            notes = []
            durable = r["durability"].startswith("D1")
            if t.durable and not durable:
                notes.append(f"not durable: {r['durability']}")
            if t.records is not None and r.get("records") != t.records:
                notes.append(f"over {r.get('records'):,} records, the target is for {t.records:,}")
            c["met"] = ok and not notes
            c["status"] = ("MET" if ok else "MISSED") + (
                f", not counted: {'; '.join(notes)}" if notes else "")
            c["durability"] = r["durability"]
        checks.append(c)
        shown = "-" if c.get("value") is None else (
            fmt_us(c["value"]) if t.field.endswith("_us") else fmt_value(t.unit, c["value"]))
        print(f"{t.name:<34} {shown:>12}   target {c['target']:<24} {c['status']}")

    mach = machine()
    print(f"machine: {mach['cpus']} CPUs ({mach['cpu'] or 'unknown CPU'}), load average "
          f"{mach['loadavg_at_end'][0]:.2f} at the end. Disks and CPUs are shared: compare "
          f"figures from one run, not across runs.")

    result = {
        "benchmark": config.name,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs_per_row": runs_per_row,
        "machine": mach,
        "meta": bench_meta(),
        "rows": list(rows.values()),
        "ratios": ratios,
        "checks": checks,
        "all_met": bool(checks) and all(c["met"] for c in checks),
    }
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"wrote {out_path}")
    if os.environ.get("BENCH_STRICT") == "1" and not result["all_met"]:
        return 1
    return 0


def main(config, argv, usage):
    """`report.py line FILE` or `report.py summary DIR OUT.json`."""
    if len(argv) == 2 and argv[0] == "line":
        return line(argv[1])
    if len(argv) == 3 and argv[0] == "summary":
        return summary(config, argv[1], argv[2])
    print(usage, file=sys.stderr)
    return 2
