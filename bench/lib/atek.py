"""Small helpers shared by the Atek benchmarks (Python 3 standard library only).

Importable (bench/footprint/measure.py uses it) and callable from shell:

    atek.py token                                  64 random hex chars
    atek.py free-port                              a currently free TCP port on 127.0.0.1
    atek.py wait-host CONFIG_DIR PID TOKEN SECS    wait for CONFIG_DIR/run.json, then for
                                                   isReady == true; prints the host URL
    atek.py call URL TOKEN API METHOD PARAMS_JSON  one JSON-RPC call through the gateway;
                                                   prints the result as JSON
    atek.py service-port URL TOKEN ID              the service's TCP port from services-api
                                                   `get` (exit 1 if the host does not say)
    atek.py wait-file PATH PID SECS                wait until PATH holds a non-empty line; print it
    atek.py wait-http URL SECS                     wait until GET URL answers 200
    atek.py check-echo URL TOKEN BODY              POST BODY (an `echo` call) to URL and check
                                                   that the result equals its params
"""

import http.client
import json
import os
import secrets
import socket
import sys
import time
import urllib.parse

GATEWAY_PATH = "/_atek/gateway"


class BenchError(Exception):
    pass


def token():
    return secrets.token_hex(32)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway_path(api):
    return GATEWAY_PATH + "?api=" + urllib.parse.quote(api, safe="/.")


def post(url_or_conn, path, body, token=None, timeout=5.0):
    """POSTs `body`; returns (status, response bytes). Reuses `url_or_conn` if it
    is an HTTPConnection (keep-alive), otherwise opens and closes one."""
    own = not isinstance(url_or_conn, http.client.HTTPConnection)
    if own:
        u = urllib.parse.urlsplit(url_or_conn)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    else:
        conn = url_or_conn
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    try:
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


def rpc_body(method, params, id_=1):
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params})


def rpc(url, token, api, method, params, timeout=5.0):
    """One JSON-RPC call through the gateway; returns the result or raises BenchError."""
    status, data = post(url, gateway_path(api), rpc_body(method, params), token, timeout)
    return parse_rpc(status, data, f"{api} {method}")


def parse_rpc(status, data, what):
    try:
        msg = json.loads(data)
    except ValueError:
        raise BenchError(f"{what}: HTTP {status}, not JSON: {data[:300]!r}") from None
    if not isinstance(msg, dict):
        raise BenchError(f"{what}: HTTP {status}, not a JSON-RPC response: {data[:300]!r}")
    if msg.get("error") is not None:
        raise BenchError(f"{what}: HTTP {status}, error {json.dumps(msg['error'])}")
    if status != 200 or "result" not in msg:
        raise BenchError(f"{what}: HTTP {status}: {data[:300]!r}")
    return msg["result"]


def process_alive(pid, popen=None):
    if popen is not None:
        return popen.poll() is None
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The state comes after the parenthesised command name.
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return False


def read_run_json(config_dir):
    """CONFIG_DIR/run.json as a dict, or None while absent or still being written."""
    try:
        with open(os.path.join(config_dir, "run.json")) as f:
            info = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(info, dict) or not info.get("url") and not info.get("port"):
        return None
    return info


def host_url(info):
    return info.get("url") or f"http://127.0.0.1:{info['port']}"


class ReadyPoller:
    """Polls isReady over one keep-alive connection, reconnecting on errors."""

    def __init__(self, url, token, timeout=2.0):
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.token, self.timeout = u.hostname, u.port, token, timeout
        self.path = gateway_path("atek.cloud/inspect-api")
        self.body = rpc_body("isReady", [])
        self.conn = None
        self.last = "no answer yet"

    def ready(self):
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            status, data = post(self.conn, self.path, self.body, self.token)
        except (OSError, http.client.HTTPException) as e:
            self.close()
            self.last = f"{type(e).__name__}: {e}"
            return False
        try:
            result = parse_rpc(status, data, "isReady")
        except BenchError as e:
            self.last = str(e)
            return False
        self.last = f"isReady = {json.dumps(result)}"
        return result is True

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def wait_host(config_dir, pid, token, timeout, interval=0.002, popen=None):
    """Waits for run.json, then for isReady == true. Returns (url, info)."""
    deadline = time.monotonic() + timeout
    info = None
    while info is None:
        info = read_run_json(config_dir)
        if info is not None:
            break
        if not process_alive(pid, popen):
            raise BenchError(f"host (pid {pid}) exited before writing {config_dir}/run.json")
        if time.monotonic() > deadline:
            raise BenchError(f"no {config_dir}/run.json after {timeout} s")
        time.sleep(interval)
    url = host_url(info)
    poller = ReadyPoller(url, token)
    try:
        while not poller.ready():
            if not process_alive(pid, popen):
                raise BenchError(f"host (pid {pid}) exited before it was ready ({poller.last})")
            if time.monotonic() > deadline:
                raise BenchError(f"host at {url} not ready after {timeout} s ({poller.last})")
            time.sleep(interval)
    finally:
        poller.close()
    return url, info


def service_port(url, token, service_id):
    info = rpc(url, token, "atek.cloud/services-api", "get", [service_id])
    port = info.get("port") if isinstance(info, dict) else None
    if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
        return port
    return None


def wait_file(path, pid, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                line = f.readline().strip()
            if line:
                return line
        except FileNotFoundError:
            pass
        if pid and not process_alive(pid):
            raise BenchError(f"process {pid} exited before writing {path}")
        if time.monotonic() > deadline:
            raise BenchError(f"{path} not written after {timeout} s")
        time.sleep(0.01)


def wait_http(url, timeout):
    deadline = time.monotonic() + timeout
    u = urllib.parse.urlsplit(url)
    last = ""
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=2)
        try:
            conn.request("GET", u.path or "/")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return
            last = f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as e:
            last = f"{type(e).__name__}: {e}"
        finally:
            conn.close()
        time.sleep(0.02)
    raise BenchError(f"{url} not answering 200 after {timeout} s ({last})")


def check_echo(url, token, body):
    u = urllib.parse.urlsplit(url)
    path = u.path + ("?" + u.query if u.query else "")
    status, data = post(url, path, body, token)
    result = parse_rpc(status, data, f"echo via {url}")
    want = json.loads(body)["params"]
    if result != want:
        raise BenchError(f"echo via {url}: result {json.dumps(result)}, expected {json.dumps(want)}")


def main(argv):
    if not argv:
        raise BenchError("usage: see the docstring of bench/lib/atek.py")
    cmd, args = argv[0], argv[1:]
    if cmd == "token":
        print(token())
    elif cmd == "free-port":
        print(free_port())
    elif cmd == "wait-host":
        config_dir, pid, tok, secs = args
        url, _ = wait_host(config_dir, int(pid), tok, float(secs), interval=0.02)
        print(url)
    elif cmd == "call":
        url, tok, api, method, params = args
        print(json.dumps(rpc(url, tok, api, method, json.loads(params))))
    elif cmd == "service-port":
        url, tok, service_id = args
        port = service_port(url, tok, service_id)
        if port is None:
            return 1
        print(port)
    elif cmd == "wait-file":
        path, pid, secs = args
        print(wait_file(path, int(pid), float(secs)))
    elif cmd == "wait-http":
        url, secs = args
        wait_http(url, float(secs))
    elif cmd == "check-echo":
        url, tok, body = args
        check_echo(url, tok, body)
    else:
        raise BenchError(f"unknown command {cmd!r}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (BenchError, ValueError, OSError, http.client.HTTPException) as e:
        print(f"atek.py: {e}", file=sys.stderr)
        sys.exit(2)
