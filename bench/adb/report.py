"""Reports bench/adb/run.sh's rows: hyperbee, SQLite and ADB side by side.

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
    name="adb",
    title="ADB benchmark: 1 KiB JSON values, the same keys for every system",
    systems=["hyperbee", "hyperbee-fsync", "sqlite-full", "sqlite-normal", "adb"],
    workloads=["single", "concurrent32", "batch100", "get", "scan", "bytes"],
    ratios=[("adb/sqlite-full", "adb", "sqlite-full"), ("adb/hyperbee", "adb", "hyperbee")],
    # The targets for ADB, all durable.
    targets=[
        Target("adb puts, 32 writers", "adb", "concurrent32", ">=", 20_000, "writes/s",
               durable=True),
        Target("adb random gets of 100k records", "adb", "get", ">=", 100_000, "gets/s",
               records=100_000),
        Target("adb range scan", "adb", "scan", ">=", 200_000, "records/s"),
    ],
)

if __name__ == "__main__":
    sys.exit(main(CONFIG, sys.argv[1:], __doc__))
