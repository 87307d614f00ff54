"""Reports bench/log/run.sh's rows: hypercore, atek-log and the disk alone side by side.

    report.py line FILE               one-line summary of one invocation's rows (progress)
    report.py summary DIR OUT.json    table of medians, ratios, targets, JSON result file

DIR holds SYSTEM-rRUN.jsonl files (see bench/lib/data_report.py). BENCH_META (a JSON
object of extra facts) goes into the result; BENCH_STRICT=1 makes a missed target exit 1.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from data_report import Config, Target, main  # noqa: E402

CONFIG = Config(
    name="log",
    title="Log benchmark: 1 KiB entries (replicate64k: 64 KiB)",
    systems=["hypercore", "hypercore-fsync", "atek-log", "disk"],
    workloads=["single", "concurrent32", "batch100", "bytes", "open_warm", "open_cold",
               "replicate1k", "replicate64k"],
    ratios=[("atek-log/hypercore-fsync", "atek-log", "hypercore-fsync"),
            ("atek-log/hypercore", "atek-log", "hypercore"),
            # atek-log as a share of what the disk alone does for the same frames and syncs.
            ("atek-log/disk", "atek-log", "disk")],
    # The targets for the log, all durable.
    targets=[
        Target("atek-log single awaited appends", "atek-log", "single", ">=", 5_000, "appends/s",
               durable=True),
        Target("atek-log single append p50", "atek-log", "single", "<=", 200, "µs",
               field="p50_us", durable=True),
        Target("atek-log appends, 32 writers", "atek-log", "concurrent32", ">=", 50_000,
               "appends/s", durable=True),
        Target("atek-log batches of 100", "atek-log", "batch100", ">=", 200_000, "entries/s",
               durable=True),
        Target("atek-log bytes per 1 KiB entry", "atek-log", "bytes", "<=", 1331.2, "bytes/entry"),
        Target("atek-log open 1M entries, warm", "atek-log", "open_warm", "<=", 10, "ms",
               records=1_000_000),
        Target("atek-log open 1M entries, cold", "atek-log", "open_cold", "<=", 50, "ms",
               records=1_000_000),
        # Verified replication into a durable replica (it fdatasyncs each verified batch).
        Target("atek-log replication, 1 KiB", "atek-log", "replicate1k", ">=", 100, "MB/s",
               durable=True),
        Target("atek-log replication, 64 KiB", "atek-log", "replicate64k", ">=", 300, "MB/s",
               durable=True),
    ],
)

if __name__ == "__main__":
    sys.exit(main(CONFIG, sys.argv[1:], __doc__))
