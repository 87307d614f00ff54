"""Start-to-ready time and idle memory of `atek run`, next to an idle Node.js
HTTP server measured the same way. Called by bench/footprint/run.sh.

    measure.py ATEK_BINARY OUT.json

Environment: FOOTPRINT_RUNS (10), FOOTPRINT_IDLE_SECONDS (2), FOOTPRINT_POLL_MS (2),
FOOTPRINT_TIMEOUT (20 s per start), FOOTPRINT_NODE (1; 0 skips Node.js), NODE (node).

Start-to-ready: from just before the process is spawned until the first `true`
from inspect-api `isReady` (Node.js: the first 200 answer), polling every
FOOTPRINT_POLL_MS. Idle RSS: VmRSS of the process FOOTPRINT_IDLE_SECONDS after ready.
"""

import http.client
import json
import os
import platform
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import atek  # noqa: E402

READY_TARGET_MS = 100.0
RSS_TARGET_MIB = 25.0

NODE_SERVER = (
    "const s = require('http').createServer((q, r) => r.end('ok'));"
    "s.listen(0, '127.0.0.1', () => console.log(s.address().port));"
)


def env_number(name, default, kind=float):
    raw = os.environ.get(name, "")
    try:
        return kind(raw) if raw else default
    except ValueError:
        raise atek.BenchError(f"{name} must be a number, not {raw!r}") from None


RUNS = IDLE_S = POLL_S = TIMEOUT_S = None
WITH_NODE = os.environ.get("FOOTPRINT_NODE", "1") != "0"
NODE = os.environ.get("NODE", "node")


def load_settings():
    global RUNS, IDLE_S, POLL_S, TIMEOUT_S
    RUNS = env_number("FOOTPRINT_RUNS", 10, int)
    IDLE_S = env_number("FOOTPRINT_IDLE_SECONDS", 2.0)
    POLL_S = env_number("FOOTPRINT_POLL_MS", 2.0) / 1000
    TIMEOUT_S = env_number("FOOTPRINT_TIMEOUT", 20.0)
    if RUNS < 1:
        raise atek.BenchError("FOOTPRINT_RUNS must be at least 1")


def status_kib(pid, field="VmRSS"):
    """A kB field of /proc/PID/status (kB there means KiB), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except (FileNotFoundError, ValueError):
                continue
            out += kids
            todo += kids
    return out


def stop(proc):
    """SIGTERM, then SIGKILL after 5 s; returns seconds until exit."""
    if proc.poll() is not None:
        return 0.0
    t0 = time.perf_counter()
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.perf_counter() - t0


def idle_memory(pid):
    time.sleep(IDLE_S)
    rss = status_kib(pid)
    if rss is None:
        raise atek.BenchError(f"process {pid} is gone {IDLE_S} s after ready")
    kids = descendants(pid)
    tree = rss + sum(status_kib(k) or 0 for k in kids)
    return rss, tree, len(kids)


def measure_atek(binary):
    work = tempfile.mkdtemp(prefix="atek-footprint.")
    config_dir = os.path.join(work, "config")
    os.mkdir(config_dir, 0o700)
    token = atek.token()
    with open(os.path.join(config_dir, "config.json"), "w") as f:
        json.dump({"port": 0, "bindAddress": "127.0.0.1", "systemAuthTokens": [token]}, f)
    log_path = os.path.join(work, "host.log")
    proc = None
    try:
        with open(log_path, "wb") as log:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [binary, "run", "--config-dir", config_dir],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
            _, info = atek.wait_host(config_dir, proc.pid, token, TIMEOUT_S, POLL_S, popen=proc)
            ready_s = time.perf_counter() - t0
        pid = info.get("pid", proc.pid)
        if pid != proc.pid:
            print(f"  note: run.json says pid {pid}, spawned {proc.pid}; measuring {pid}", file=sys.stderr)
        rss, tree, kids = idle_memory(pid)
        stop_s = stop(proc)
        if os.path.exists(os.path.join(config_dir, "run.json")):
            print("  note: run.json still present after the host stopped", file=sys.stderr)
        return {"ready_ms": ready_s * 1000, "rss_kib": rss, "tree_rss_kib": tree,
                "children": kids, "stop_ms": stop_s * 1000}
    except BaseException:
        if proc is not None:
            stop(proc)
            try:
                with open(log_path, errors="replace") as f:
                    tail = f.readlines()[-30:]
                print("  host log:\n" + "".join("    " + line for line in tail), file=sys.stderr)
            except OSError:
                pass
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure_node():
    proc = None
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [NODE, "-e", NODE_SERVER],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + TIMEOUT_S
        if not select.select([proc.stdout], [], [], TIMEOUT_S)[0]:
            raise atek.BenchError("node printed no port")
        port = int(proc.stdout.readline())
        conn = None
        while True:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    break
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            if time.monotonic() > deadline or proc.poll() is not None:
                raise atek.BenchError("node server not answering")
            time.sleep(POLL_S)
        ready_s = time.perf_counter() - t0
        conn.close()
        rss, tree, kids = idle_memory(proc.pid)
        stop_s = stop(proc)
        return {"ready_ms": ready_s * 1000, "rss_kib": rss, "tree_rss_kib": tree,
                "children": kids, "stop_ms": stop_s * 1000}
    finally:
        if proc is not None:
            stop(proc)
            proc.stdout.close()


def stats(runs):
    ready = [r["ready_ms"] for r in runs]
    rss = [r["rss_kib"] / 1024 for r in runs]
    tree = [r["tree_rss_kib"] / 1024 for r in runs]
    return {
        "ready_ms": {"median": statistics.median(ready), "max": max(ready), "min": min(ready)},
        "rss_mib": {"median": statistics.median(rss), "max": max(rss), "min": min(rss)},
        "tree_rss_mib": {"median": statistics.median(tree), "max": max(tree)},
    }


def describe(run):
    extra = ""
    if run["children"]:
        extra = f" (with {run['children']} children {run['tree_rss_kib'] / 1024:.1f} MiB)"
    return (f"ready {run['ready_ms']:7.1f} ms   idle RSS {run['rss_kib'] / 1024:6.1f} MiB{extra}"
            f"   stop {run['stop_ms']:6.1f} ms")


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    binary, out_path = argv
    load_settings()
    if WITH_NODE and shutil.which(NODE) is None:
        print(f"[bench] {NODE} not found: no Node.js comparison", file=sys.stderr)
        with_node = False
    else:
        with_node = WITH_NODE
    node_version = ""
    if with_node:
        node_version = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip()

    atek_runs, node_runs = [], []
    print(f"[bench] {RUNS} starts each, interleaved; poll every {POLL_S * 1000:g} ms; "
          f"RSS {IDLE_S:g} s after ready", file=sys.stderr)
    for i in range(1, RUNS + 1):
        run = measure_atek(binary)
        atek_runs.append(run)
        print(f"  atek    #{i:<2} {describe(run)}", file=sys.stderr, flush=True)
        if with_node:
            run = measure_node()
            node_runs.append(run)
            print(f"  node.js #{i:<2} {describe(run)}", file=sys.stderr, flush=True)

    a = stats(atek_runs)
    n = stats(node_runs) if node_runs else None
    checks = [
        {"name": "atek start-to-ready (median)", "value": a["ready_ms"]["median"], "unit": "ms",
         "max": a["ready_ms"]["max"], "target": READY_TARGET_MS,
         "met": a["ready_ms"]["median"] <= READY_TARGET_MS},
        {"name": "atek idle RSS (median)", "value": a["rss_mib"]["median"], "unit": "MiB",
         "max": a["rss_mib"]["max"], "target": RSS_TARGET_MIB,
         "met": a["rss_mib"]["median"] <= RSS_TARGET_MIB},
    ]

    print()
    print(f"Footprint: {RUNS} starts of `atek run` (no services), median and max")
    header = f"{'':<30} {'ready median':>13} {'ready max':>10} {'RSS median':>11} {'RSS max':>9}"
    print(header)
    print("-" * len(header))

    def row(name, s):
        print(f"{name:<30} {s['ready_ms']['median']:>10.1f} ms {s['ready_ms']['max']:>7.1f} ms "
              f"{s['rss_mib']['median']:>7.1f} MiB {s['rss_mib']['max']:>5.1f} MiB")

    row("atek run", a)
    if n:
        row(f"node.js {node_version} (idle http)", n)
    print()
    for c in checks:
        within = "max also within" if c["max"] <= c["target"] else f"max {c['max']:.1f} {c['unit']} over"
        print(f"{c['name']:<30} {c['value']:7.1f} {c['unit']:<3}  target <= {c['target']:g} {c['unit']:<3} "
              f"{'MET' if c['met'] else 'MISSED'} ({within})")
    if n:
        print(f"for scale: atek/node.js RSS {a['rss_mib']['median'] / n['rss_mib']['median']:.2f}x, "
              f"start-to-ready {a['ready_ms']['median'] / n['ready_ms']['median']:.2f}x")
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.2f} at the end; "
          f"start times are noisy on a shared machine, RSS much less so.")

    result = {
        "benchmark": "footprint",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "binary": binary,
        "settings": {"runs": RUNS, "idle_seconds": IDLE_S, "poll_ms": POLL_S * 1000,
                     "timeout_seconds": TIMEOUT_S},
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                    "loadavg_at_end": list(os.getloadavg())},
        "atek": {"runs": atek_runs, **a},
        "node": {"version": node_version, "runs": node_runs, **n} if n else None,
        "checks": checks,
        "all_met": all(c["met"] for c in checks),
    }
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"wrote {out_path}")
    if os.environ.get("BENCH_STRICT") == "1" and not result["all_met"]:
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except atek.BenchError as e:
        print(f"[bench] error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
