#!/usr/bin/env python3
"""The training run of a profile-guided build (scripts/build-release): drives an
instrumented `atek` through the work a home server does most, so that the compiler
learns which paths are hot.

    scripts/pgo-train.py --atek BIN --echo BIN [--seconds N] [--beam-mib N]

1. The host (`atek run`, a config of its own in a temporary directory) with the echo
   app (bench/echo-service) as a core service exporting `bench.example/echo`.
2. Log in as a browser would (users-api, login, the bind-session flow of the app's
   subdomain), then for `--seconds`, on 8 keep-alive connections at once, a fixed mix:
   JSON-RPC calls through the gateway (single and batched; services-api and inspect-api
   too), GETs of 1 KB, 64 KB and 1 MB through the app's subdomain, a few errors, and ADB
   (a table with a schema and an index, writes, reads, lists and queries).
3. `atek relay` on 127.0.0.1 and two `atek beam`s through it, moving `--beam-mib` MiB.
4. Every `atek` process is stopped with SIGTERM, so that each writes its profile
   (LLVM_PROFILE_FILE, set by the caller) as it exits.

Every answer is checked: a run that trained error paths instead of the real ones would
make a slower binary, so the script fails rather than go on. Everything stays on
127.0.0.1, with no public relay, address lookup or port mapping. Python 3's standard
library only, with bench/lib/atek.py.
"""

import argparse
import http.client
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench" / "lib"))
import atek  # noqa: E402  (bench/lib/atek.py)

API = "bench.example/echo"
CONNECTIONS = 8


def log(msg):
    print(f"[pgo-train] {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    pass


class Client:
    """One keep-alive connection to the host, checking every answer."""

    def __init__(self, port, token, app_host, cookie):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.token, self.app_host, self.cookie = token, app_host, cookie
        self.calls = 0

    def post(self, api, body):
        """POSTs `body` to the gateway for `api`; returns (status, response bytes)."""
        self.calls += 1
        return atek.post(self.conn, atek.gateway_path(api), body, self.token, timeout=30)

    def call(self, api, method, params):
        answer = self.post(api, atek.rpc_body(method, params, self.calls))
        return atek.parse_rpc(*answer, f"{api} {method}")

    def get(self, path, length):
        self.calls += 1
        self.conn.request("GET", path, headers={"Host": self.app_host, "Cookie": self.cookie})
        reply = self.conn.getresponse()
        data = reply.read()
        if reply.status != 200 or len(data) != length:
            raise Failed(f"GET {path} on {self.app_host}: HTTP {reply.status}, {len(data)} bytes")

    def close(self):
        self.conn.close()


def echo_call(c, i):
    params = ["hello", i, {"nested": [True, None, 1.5]}]
    if c.call(API, "echo", params) != params:
        raise Failed("the echo app did not echo")


def batch_call(c, i):
    calls = [{"jsonrpc": "2.0", "id": k, "method": "echo", "params": [k]} for k in range(3)]
    status, data = c.post(API, json.dumps(calls))
    answers = json.loads(data) if status == 200 else None
    if not isinstance(answers, list) or [a.get("result") for a in answers] != [[0], [1], [2]]:
        raise Failed(f"a batch came back wrong: HTTP {status}: {data[:200]!r}")


def host_apis(c, i):
    if c.call("atek.cloud/inspect-api", "isReady", []) is not True:
        raise Failed("isReady is not true")
    c.call("atek.cloud/services-api", "list", [])


def errors(c, i):
    status, data = c.post("example.com/nobody", atek.rpc_body("m", []))
    if status != 200 or "error" not in json.loads(data):
        raise Failed(f"a call to an unknown API got HTTP {status}: {data[:200]!r}")
    status, _ = c.post(API, b"{not json")
    if status != 400:
        raise Failed(f"a body that is not JSON got HTTP {status}, not 400")


def make_adb(c):
    """A database with a table (schema, index) to work on; returns its id."""
    db = c.call("atek.cloud/adb-api", "dbGetOrCreate", ["pgo-train"])["dbId"]
    c.call("atek.cloud/adb-api", "tableDefine", [db, {
        "id": "example.com/tasks", "revision": 1,
        "jsonSchema": {"type": "object", "required": ["title", "priority"],
                       "properties": {"title": {"type": "string"},
                                      "priority": {"type": "integer"}}},
        "indexes": [{"name": "priority", "path": "/priority"}],
    }])
    return db


def adb_work(db):
    def work(c, i):
        adb = "atek.cloud/adb-api"
        path = f"/example.com/tasks/t{i % 500}"
        c.call(adb, "recordPut", [db, path, {"title": f"task {i}", "priority": i % 7}])
        c.call(adb, "recordGet", [db, path])
        if i % 10 == 0:
            c.call(adb, "recordList", [db, "/example.com/tasks", {"limit": 20}])
            c.call(adb, "recordQuery", [db, "example.com/tasks",
                                        {"index": "priority", "gte": 3, "limit": 10}])
    return work


def host_phase(args, work):
    token = atek.token()
    config = atek.write_echo_host(work, args.echo, token, work / "echo.port", "echo", "socket",
                                  API)
    log(f"starting {args.atek} run")
    host = subprocess.Popen([args.atek, "run", "--config-dir", str(config)],
                            stdout=subprocess.DEVNULL, stderr=open(work / "host.log", "w"))
    try:
        url, _ = atek.wait_host(config, host.pid, token, 30, popen=host)
        port = int(url.rsplit(":", 1)[1])
        app_host, cookie = atek.app_session(url, token, "echo", "pgo")
        first = Client(port, token, app_host, cookie)
        db = make_adb(first)
        first.close()
        # The mix, by weight: what each connection does, in turn, over and over.
        mix = ([echo_call] * 12 + [lambda c, i: c.get("/bytes/1024", 1024)] * 8 +
               [lambda c, i: c.get("/bytes/65536", 65536)] * 2 +
               [lambda c, i: c.get("/bytes/1048576", 1048576), batch_call, host_apis,
                errors] + [adb_work(db)] * 2)
        deadline = time.monotonic() + args.seconds
        failures, counts = [], []

        def worker(n):
            c = Client(port, token, app_host, cookie)
            i = n
            try:
                while time.monotonic() < deadline and not failures:
                    mix[i % len(mix)](c, i)
                    i += 1
            except Exception as e:  # noqa: BLE001 (reported below)
                failures.append(f"{type(e).__name__}: {e}")
            finally:
                counts.append(c.calls)
                c.close()

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(CONNECTIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise Failed(failures[0])
        log(f"host: {sum(counts)} requests on {CONNECTIONS} connections in {args.seconds} s")
    finally:
        stop(host, "the host", work / "host.log")


def stop(proc, what, log_file=None):
    """SIGTERM (a clean exit writes the profile), then wait; fails if it does not end."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise Failed(f"{what} did not stop within 30 s of SIGTERM")
    if proc.returncode not in (0, -signal.SIGTERM, 128 + signal.SIGTERM) and log_file:
        sys.stderr.write(pathlib.Path(log_file).read_text()[-2000:])
        raise Failed(f"{what} exited with {proc.returncode}")


def wait_for(pattern, path, proc, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, path.read_text(errors="replace"), re.M)
        if m:
            return m
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    sys.stderr.write(path.read_text(errors="replace"))
    raise Failed(f"{what}: no line matching {pattern!r}")


def beam_phase(args, work):
    relay_dir = work / "relay"
    relay_dir.mkdir()
    relay_log = work / "relay.log"
    relay = subprocess.Popen(
        [args.atek, "relay", "--self-signed", str(relay_dir), "--hostname", "127.0.0.1",
         "--bind", "127.0.0.1", "--https-port", "0", "--http-port", "0", "--quic-port", "0"],
        stdout=subprocess.DEVNULL, stderr=open(relay_log, "w"))
    procs = [relay]
    try:
        flags = wait_for(r"^▶\s+(--relay .*)$", relay_log, relay, "atek relay").group(1).split()
        flags += ["--no-public", "--no-port-mapping", "--timeout", "20"]
        env = dict(os.environ, HOME=str(work))
        listener_err = work / "listener.err"
        listener = subprocess.Popen(
            [args.atek, "--config-dir", str(work / "l"), "beam", *flags],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=open(listener_err, "w"),
            env=env)
        procs.append(listener)
        received = []
        reader = threading.Thread(target=lambda: received.append(drain(listener.stdout)))
        reader.start()
        passphrase = wait_for(r"^▶\s+atek beam (\S+)", listener_err, listener,
                              "the beam listener").group(1)
        connector = subprocess.Popen(
            [args.atek, "--config-dir", str(work / "c"), "beam", passphrase, *flags],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=open(work / "connector.err", "w"), env=env)
        procs.append(connector)
        block = bytes(range(256)) * 4096  # 1 MiB
        for _ in range(args.beam_mib):
            connector.stdin.write(block)
        connector.stdin.close()
        for proc, what in ((connector, "the beam connector"), (listener, "the beam listener")):
            if proc.wait(timeout=120) != 0:
                sys.stderr.write((work / "connector.err").read_text())
                sys.stderr.write(listener_err.read_text())
                raise Failed(f"{what} exited with {proc.returncode}")
        reader.join()
        if received != [args.beam_mib << 20]:
            raise Failed(f"beam: {received} bytes arrived, not {args.beam_mib << 20}")
        log(f"beam: {args.beam_mib} MiB through atek relay")
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                stop(proc, "a p2p process")


def drain(stream):
    total = 0
    while chunk := stream.read(1 << 20):
        total += len(chunk)
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--atek", required=True, help="the instrumented atek binary")
    parser.add_argument("--echo", required=True, help="bench/echo-service's binary")
    parser.add_argument("--seconds", type=float, default=10, help="of host traffic")
    parser.add_argument("--beam-mib", type=int, default=256, help="MiB to beam (0: no beam)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="atek-pgo-train.") as tmp:
        work = pathlib.Path(tmp)
        try:
            host_phase(args, work)
            if args.beam_mib > 0:
                beam_phase(args, work)
        except (Failed, atek.BenchError) as e:
            log(f"failed: {e}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
