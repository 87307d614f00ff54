"""Small helpers shared by the Atek benchmarks (Python 3 standard library only).

Importable (bench/footprint/measure.py uses it) and callable from shell:

    atek.py token                                  64 random hex chars
    atek.py free-port                              a currently free TCP port on 127.0.0.1
    atek.py echo-host WORK ECHO_BIN TOKEN PORT_FILE SERVICE_ID LISTEN [API]
                                                   write WORK/echo-pkg (the echo app's package,
                                                   exporting API at /rpc) and WORK/config (a
                                                   host config with it as core service
                                                   SERVICE_ID, ECHO_LISTEN=LISTEN)
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
    atek.py app-session URL TOKEN SERVICE USERNAME
                                                   create USERNAME (users-api, random password),
                                                   log in, open SERVICE's subdomain as a browser
                                                   does (bind-session flow); prints two lines:
                                                   its Host header and the Cookie header for it
    atek.py check-get URL LENGTH [HEADER ...]      GET URL (HEADER: "Name: value"); check that
                                                   it answers 200 with exactly LENGTH body bytes

Also, for the report scripts (bench/*/report.py): parse_wrk(), fmt_us(), fmt_rps(),
machine() and what both reports share (reading runs, medians, target checks, the
machine line, the result file).
"""

import http.client
import json
import os
import pathlib
import platform
import re
import secrets
import socket
import statistics
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


def write_echo_host(work, echo_bin, token, port_file, service_id, listen, api=""):
    """WORK/echo-pkg, the echo app's service package (exporting `api` at /rpc, if given),
    and WORK/config/config.json: a host on 127.0.0.1, port 0, with the system token
    `token` and the app as the core service `service_id` (ECHO_LISTEN=`listen`, its port
    written to `port_file`). The exec path is machine specific, so this is generated, not
    committed. Returns the config dir."""
    work = pathlib.Path(work)
    config, package_dir = work / "config", work / "echo-pkg"
    config.mkdir(exist_ok=True)
    config.chmod(0o700)
    package_dir.mkdir(exist_ok=True)
    package = {"name": "echo", "runtime": "exec", "exec": [str(echo_bin)]}
    if api:
        package["exports"] = [{"api": api, "path": "/rpc"}]
    (package_dir / "atek.json").write_text(json.dumps(package, indent=2) + "\n")
    (config / "config.json").write_text(json.dumps({
        "port": 0,
        "bindAddress": "127.0.0.1",
        "systemAuthTokens": [token],
        "coreServices": [{
            "id": service_id,
            "sourceUrl": package_dir.as_uri(),
            "config": {"ECHO_LISTEN": listen, "ECHO_PORT_FILE": str(port_file)},
        }],
    }, indent=2) + "\n")
    return config


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


# --- plain HTTP requests, logging in, subdomain sessions --------------------------------


class Reply:
    """One HTTP exchange, kept whole so that an error can show both sides."""

    def __init__(self, method, url, headers, body, status, reason, response_headers, data):
        self.method, self.url, self.headers, self.body = method, url, headers, body
        self.status, self.reason = status, reason
        self.response_headers, self.data = response_headers, data

    def header(self, name):
        return self.response_headers.get(name)

    def set_cookies(self):
        return self.response_headers.get_all("Set-Cookie") or []

    def describe(self, limit=400):
        """The request and the response, for error messages."""
        lines = [f"  request:  {self.method} {self.url}"]
        lines += [f"            {k}: {redact(k, v)}" for k, v in self.headers.items()]
        if self.body:
            lines.append(f"            body {redact_body(self.body)[:limit]}")
        lines.append(f"  response: HTTP {self.status} {self.reason}")
        lines += [f"            {k}: {redact(k, v)}" for k, v in self.response_headers.items()]
        if self.data:
            if (self.header("Content-Type") or "").startswith("application/octet-stream"):
                limit = min(limit, 16)
            more = f" ... ({len(self.data)} bytes)" if len(self.data) > limit else ""
            lines.append(f"            body {self.data[:limit]!r}{more}")
        return "\n".join(lines)


def redact(name, value):
    """Hides tokens, not their shape: `session=abcd…` stays recognisable."""
    if name.lower() in ("authorization", "cookie", "set-cookie"):
        return re.sub(r"([= ][A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]{10,}", r"\1…", value)
    return value


def redact_body(body):
    return re.sub(r'("password"\s*:\s*)"[^"]*"', r'\1"…"', body)


def request(url, method="GET", path=None, headers=None, body=None, timeout=10.0):
    """One request on a fresh connection to URL's host and port; never follows
    redirects. `path` defaults to URL's path and query. Returns a Reply."""
    u = urllib.parse.urlsplit(url)
    if path is None:
        path = (u.path or "/") + ("?" + u.query if u.query else "")
    headers = dict(headers or {})
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
        data = body.encode() if isinstance(body, str) else body
        if data is not None:
            headers.setdefault("Content-Length", str(len(data)))
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders(data)
        response = conn.getresponse()
        shown = f"http://{headers.get('Host', u.netloc)}{path}"
        if headers.get("Host") and headers["Host"] != u.netloc:
            shown += f" (connected to {u.netloc})"
        return Reply(method, shown, headers, body, response.status, response.reason,
                     response.msg, response.read())
    finally:
        conn.close()


class CookieJar:
    """Just enough of a browser's cookie store for the bind-session flow: host-only
    cookies per host name (ports do not matter to cookies), deleted by Max-Age=0."""

    def __init__(self):
        self.hosts = {}

    def take(self, host, reply):
        jar = self.hosts.setdefault(host.split(":")[0].lower(), {})
        for line in reply.set_cookies():
            pair, *attributes = line.split(";")
            name, sep, value = pair.partition("=")
            if not sep or not name.strip():
                continue
            gone = any(a.strip().lower() in ("max-age=0", "max-age=-1") for a in attributes)
            if gone:
                jar.pop(name.strip(), None)
            else:
                jar[name.strip()] = value.strip()

    def header(self, host):
        jar = self.hosts.get(host.split(":")[0].lower(), {})
        return "; ".join(f"{k}={v}" for k, v in jar.items())


def browse(url, jar, start, allowed_hosts, max_hops=8):
    """GETs `start` (an http URL on one of `allowed_hosts`) the way a browser does:
    sends and stores cookies, follows redirects between the allowed hosts, and stops at
    the first answer that is not a redirect. Every request goes to URL's address; only
    the Host header changes. Returns (final host, final reply, every reply)."""
    replies = []
    current = start
    for _ in range(max_hops):
        target = urllib.parse.urlsplit(current)
        if target.scheme != "http" or target.netloc not in allowed_hosts:
            raise BenchError(f"redirected to {current}, off the host and the app\n"
                             + "\n".join(r.describe() for r in replies))
        headers = {"Host": target.netloc}
        cookie = jar.header(target.netloc)
        if cookie:
            headers["Cookie"] = cookie
        path = (target.path or "/") + ("?" + target.query if target.query else "")
        r = request(url, "GET", path, headers)
        replies.append(r)
        jar.take(target.netloc, r)
        if r.status not in (301, 302, 303, 307, 308):
            return target.netloc, r, replies
        current = urllib.parse.urljoin(current, r.header("Location") or "")
    raise BenchError(f"more than {max_hops} redirects from {start}\n"
                     + "\n".join(r.describe() for r in replies))


def create_user(url, token, username, password):
    return rpc(url, token, "atek.cloud/users-api", "create",
               [{"username": username, "password": password}])


def login(url, jar, host, username, password):
    """Logs in through user-sessions-api with Host: `host`; keeps its cookies in `jar`."""
    body = rpc_body("login", [{"username": username, "password": password}])
    r = request(url, "POST", gateway_path("atek.cloud/user-sessions-api"),
                {"Host": host, "Content-Type": "application/json"}, body)
    try:
        parse_rpc(r.status, r.data, "user-sessions-api login")
    except BenchError as e:
        raise BenchError(f"{e}\n{r.describe()}") from None
    if not r.set_cookies():
        raise BenchError("user-sessions-api login succeeded but set no cookie\n" + r.describe())
    jar.take(host, r)


def app_session(url, token, service, username):
    """Creates `username` with a random password, logs in on the main domain (Host
    localhost:PORT, the default domain), then opens http://SERVICE.localhost:PORT/ as a
    browser would (the bind-session flow: the app's subdomain -> /_atek/bind-session on
    the main domain -> back with a bind token -> a cookie for the app). Returns (the app's
    Host header, the Cookie header a browser would send it)."""
    port = urllib.parse.urlsplit(url).port
    main_host, app_host = f"localhost:{port}", f"{service}.localhost:{port}"
    password = secrets.token_urlsafe(18)
    create_user(url, token, username, password)
    jar = CookieJar()
    login(url, jar, main_host, username, password)
    final_host, final, replies = browse(url, jar, f"http://{app_host}/", {main_host, app_host})
    chain = "\n".join(r.describe() for r in replies)
    if final_host != app_host or final.status != 200:
        raise BenchError(f"opening http://{app_host}/ after logging in ended with HTTP "
                         f"{final.status} on {final_host}, not 200 from the app\n" + chain)
    if len(replies) < 2 or not jar.header(app_host):
        raise BenchError(f"http://{app_host}/ answered without the bind-session flow "
                         "or without setting a cookie for the app\n" + chain)
    if any("bst=" in (r.header("Location") or "") for r in replies[-2:]):
        raise BenchError("the app was reached with bst still in the URL\n" + chain)
    return app_host, jar.header(app_host)


def header_pairs(args):
    headers = {}
    for arg in args:
        name, sep, value = arg.partition(":")
        if not sep or not name.strip():
            raise BenchError(f"not a header: {arg!r} (expected 'Name: value')")
        headers[name.strip()] = value.strip()
    return headers


def check_get(url, length, headers):
    """GET url: it must answer 200 with exactly `length` body bytes (and a matching
    Content-Length), so a redirect or an error page is never taken for success."""
    r = request(url, "GET", headers=headers, timeout=30)
    declared = r.header("Content-Length")
    if r.status != 200 or len(r.data) != length or (declared and int(declared) != length):
        raise BenchError(f"expected 200 with {length} bytes, got HTTP {r.status} with "
                         f"{len(r.data)} bytes (Content-Length {declared})\n" + r.describe(200))


# --- wrk output and reporting -------------------------------------------------------------

UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
UNITS_BYTES = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40, "PB": 1 << 50}


def parse_wrk(text):
    """{rps, p50_us, p99_us, requests, bytes, non2xx, socket_errors} from `wrk --latency`
    output. Careful: wrk's "Non-2xx or 3xx responses" counts only statuses >= 400;
    a 3xx is a success to wrk (check `bytes`/`requests` against what a 200 carries)."""

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
    read = re.search(r"^\s*\d+ requests in [\d.]+\w+, ([\d.]+)([KMGTP]?B) read", text, re.M)
    return {
        "rps": float(rps),
        "p50_us": latency(50),
        "p99_us": latency(99),
        "requests": int(number(r"^\s*(\d+) requests in ") or 0),
        "bytes": float(read.group(1)) * UNITS_BYTES[read.group(2)] if read else None,
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


def machine(unknown_cpu=None):
    """The machine's CPUs, kernel and load average, for the result files. `cpu` is
    `unknown_cpu` when /proc/cpuinfo names no model."""
    cpu = unknown_cpu
    try:
        with open("/proc/cpuinfo") as f:
            for row in f:
                if row.startswith("model name"):
                    cpu = row.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "loadavg_at_end": list(os.getloadavg()),
    }


# What bench/gateway/report.py and bench/proxy/report.py share: reading the wrk outputs
# run.sh wrote, medians, targets, the machine line and the result file.


def print_progress(label, r, extra=""):
    """The progress line of one wrk run (`report.py line`)."""
    print(f"  {label}: {fmt_rps(r['rps']):>9} req/s  p50 {fmt_us(r['p50_us']):>9}  "
          f"p99 {fmt_us(r['p99_us']):>9}{extra}", flush=True)


def read_runs(directory, name_re, key_of, add=None):
    """{key: [run, ...]} of the wrk outputs in `directory` whose names match `name_re`:
    each run is parse_wrk()'s dict and its number (`run`); key_of(match) gives its key,
    and add(run, key, path), if given, adds to it."""
    runs = {}
    for name in sorted(os.listdir(directory)):
        m = name_re.match(name)
        if not m:
            continue
        key = key_of(m)
        path = os.path.join(directory, name)
        with open(path) as f:
            parsed = parse_wrk(f.read())
        parsed["run"] = int(m["run"])
        if add is not None:
            add(parsed, key, path)
        runs.setdefault(key, []).append(parsed)
    return runs


def medians(runs):
    """The median req/s, p50 and p99 of some runs."""
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "p50_us": statistics.median(r["p50_us"] for r in runs),
        "p99_us": statistics.median(r["p99_us"] for r in runs),
    }


def add_cpu(r, path):
    """Adds proxy_cpu_us and app_cpu_us (CPU time per completed request) to the run `r`
    from FILE.cpu ("PROXY_TICKS APP_TICKS CLK_TCK", written by common.sh's with_cpu)."""
    try:
        proxy, app, tck = (int(x) for x in open(path + ".cpu").read().split())
    except (OSError, ValueError):
        return
    if r["requests"] and tck:
        r["proxy_cpu_us"] = proxy * 1e6 / tck / r["requests"]
        r["app_cpu_us"] = app * 1e6 / tck / r["requests"]


def cpu_medians(runs, row):
    """The median CPU per request of the proxy (None for the direct row, which has none)
    and of the app over `runs`."""
    def median_of(field):
        values = [r[field] for r in runs if field in r]
        if not values or (field == "proxy_cpu_us" and row == "direct"):
            return None
        return statistics.median(values)
    return {
        "proxy_cpu_us_per_request": median_of("proxy_cpu_us"),
        "app_cpu_us_per_request": median_of("app_cpu_us"),
    }


def cpu_progress(r, row):
    """The CPU part of a progress line ("" without CPU figures)."""
    if "proxy_cpu_us" not in r:
        return ""
    out = f"  CPU/req: app {fmt_us(r['app_cpu_us'])}"
    if row and row != "direct":
        out += f", {row} {fmt_us(r['proxy_cpu_us'])}"
    return out


def fmt_cpu(us):
    return "-" if us is None else fmt_us(us)


def find_median(rows, **fields):
    """The `median` of the first row with these field values, or None."""
    for r in rows:
        if all(r[k] == v for k, v in fields.items()):
            return r["median"]
    return None


def bench_settings():
    """BENCH_SECONDS and BENCH_RUNS as run.sh passed them ("?" if not)."""
    return os.environ.get("BENCH_SECONDS", "?"), os.environ.get("BENCH_RUNS", "?")


def print_head(title, header, dashes):
    """The title, the column names and a rule `dashes` longer than them."""
    print()
    print(title)
    print(header)
    print("-" * (len(header) + dashes))


def check(name, value, op, target):
    """A target check: `value` (a ratio) must be >= or <= `target`."""
    met = value >= target if op == ">=" else value <= target
    return {"name": name, "value": value, "target": f"{op} {target}", "met": met}


def print_checks(checks, missing):
    """One line per check, or `missing` if there are none."""
    if not checks:
        print(missing)
    for c in checks:
        print(f"{c['name']:<32} {c['value']:6.2f}x   target {c['target']:<7} "
              f"{'MET' if c['met'] else 'MISSED'}")


def print_machine(unknown_cpu=None):
    """Prints the machine line; returns machine()."""
    mach = machine(unknown_cpu)
    print(f"machine: {mach['cpus']} CPUs ({mach['cpu'] or 'unknown CPU'}), load average "
          f"{mach['loadavg_at_end'][0]:.2f} at the end. wrk, the proxies and the app share "
          f"these CPUs: compare ratios from one run, not absolute numbers across runs.")
    build = bench_meta().get("atek_build")
    if build:
        print(f"atek build measured: {build}")
    return mach


def bench_meta():
    """BENCH_META, the JSON object of extra facts run.sh passes ({} if unreadable)."""
    try:
        return json.loads(os.environ.get("BENCH_META", "{}"))
    except ValueError:
        return {}


def write_result(benchmark, out_path, mach, rows, ratios, checks, failures):
    """Writes the result file and says so. Returns the exit status: 1 with BENCH_STRICT=1
    if a target was missed or there were `failures`, else 0."""
    seconds, n_runs = bench_settings()
    result = {
        "benchmark": benchmark,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds_per_run": float(seconds) if seconds.replace(".", "", 1).isdigit() else seconds,
        "runs_per_row": int(n_runs) if n_runs.isdigit() else n_runs,
        "machine": mach,
        "meta": bench_meta(),
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

    if os.environ.get("BENCH_STRICT") == "1" and (not result["all_met"] or failures):
        return 1
    return 0


def report_main(argv, usage, line, summary):
    """`report.py line FILE` or `report.py summary DIR OUT.json`; else prints `usage`."""
    if len(argv) == 2 and argv[0] == "line":
        return line(argv[1])
    if len(argv) == 3 and argv[0] == "summary":
        return summary(argv[1], argv[2])
    print(usage, file=sys.stderr)
    return 2


def main(argv):
    if not argv:
        raise BenchError("usage: see the docstring of bench/lib/atek.py")
    cmd, args = argv[0], argv[1:]
    if cmd == "token":
        print(token())
    elif cmd == "free-port":
        print(free_port())
    elif cmd == "echo-host":
        write_echo_host(*args)
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
    elif cmd == "app-session":
        url, tok, service_id, username = args
        print("\n".join(app_session(url, tok, service_id, username)))
    elif cmd == "check-get":
        url, length, *headers = args
        check_get(url, int(length), header_pairs(headers))
    else:
        raise BenchError(f"unknown command {cmd!r}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (BenchError, ValueError, OSError, http.client.HTTPException) as e:
        print(f"atek.py: {e}", file=sys.stderr)
        sys.exit(2)
