//! `atek-echo-service`: a tiny, fast Atek service.
//!
//! It is the `exec` runtime fixture of the compatibility tests and the app
//! behind the gateway benchmark (`bench/gateway/run.sh`).
//!
//! Environment, as given by the host:
//! - `ATEK_ASSIGNED_SOCKET_FILE`: Unix socket path to listen on.
//! - `ATEK_ASSIGNED_PORT`: TCP port to listen on, on 127.0.0.1 (0 or unset: any free port).
//! - `ATEK_ASSIGNED_SERVICE_KEY`, `ATEK_HOST_PORT`, `ATEK_HOST_BEARER_TOKEN`:
//!   reported (never the token itself) by the `env` method.
//!
//! Knobs for tests:
//! - `ECHO_LISTEN` = `socket` (default) | `port` | `both`.
//! - `ECHO_PORT_FILE`: when listening on TCP, write the bound port to this file.
//! - `ECHO_FAIL_READY=1`: `HEAD /` and `GET /` answer 503 forever.
//! - `ECHO_CRASH_AFTER_MS=N`: exit with status 3 after N milliseconds.
//! - `ECHO_CFG_*`: reported back by the `env` method.
//!
//! `GET /` and `HEAD /` answer a short text banner. `GET /bytes/{n}` answers `n`
//! bytes (up to [`MAX_BYTES`]) as `application/octet-stream`, sliced from one
//! buffer made at start; the proxy benchmark (`bench/proxy/run.sh`) uses it.
//!
//! Any `POST` is a JSON-RPC 2.0 call; see [`dispatch`] for the methods.

use std::borrow::Cow;
use std::convert::Infallible;
use std::error::Error;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

type BoxError = Box<dyn Error + Send + Sync>;

/// Largest request body accepted.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Largest `n` of `GET /bytes/{n}`.
const MAX_BYTES: usize = 16 * 1024 * 1024;
const BANNER: &[u8] = b"atek-echo-service\n";
const GARBAGE: &[u8] = b"this is not json";
const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
const OCTETS: &str = "application/octet-stream";

/// Process-wide settings, computed once at start.
struct State {
    fail_ready: bool,
    /// The `env` method's result, serialized.
    env_json: String,
    /// What `GET /bytes/{n}` slices its answer from: [`MAX_BYTES`] zero bytes.
    /// Allocated zeroed, so it costs address space and not memory until read.
    payload: &'static [u8],
}

#[derive(Clone, Copy)]
enum Listen {
    Socket,
    Port,
    Both,
}

impl Listen {
    fn from_env() -> Result<Self, BoxError> {
        match std::env::var("ECHO_LISTEN").as_deref() {
            Err(_) | Ok("" | "socket") => Ok(Self::Socket),
            Ok("port") => Ok(Self::Port),
            Ok("both") => Ok(Self::Both),
            Ok(other) => {
                Err(format!("ECHO_LISTEN must be socket, port or both, not {other:?}").into())
            }
        }
    }

    fn socket(self) -> bool {
        matches!(self, Self::Socket | Self::Both)
    }

    fn port(self) -> bool {
        matches!(self, Self::Port | Self::Both)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("atek-echo-service: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let listen = Listen::from_env()?;
    let state: &'static State = Box::leak(Box::new(State {
        fail_ready: std::env::var_os("ECHO_FAIL_READY").is_some_and(|v| !v.is_empty() && v != "0"),
        env_json: env_json(std::env::vars_os()),
        payload: vec![0u8; MAX_BYTES].leak(),
    }));

    if let Some(ms) = env_number::<u64>("ECHO_CRASH_AFTER_MS")? {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            eprintln!("atek-echo-service: crashing after {ms} ms, as asked by ECHO_CRASH_AFTER_MS");
            std::process::exit(3);
        });
    }

    let mut socket_path = None;
    if listen.socket() {
        let path = PathBuf::from(
            std::env::var_os("ATEK_ASSIGNED_SOCKET_FILE")
                .filter(|p| !p.is_empty())
                .ok_or("ATEK_ASSIGNED_SOCKET_FILE is not set (ECHO_LISTEN is socket or both)")?,
        );
        remove_stale_socket(&path)?;
        let listener = UnixListener::bind(&path)
            .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
        eprintln!("atek-echo-service: listening on unix:{}", path.display());
        tokio::spawn(serve_unix(listener, state));
        socket_path = Some(path);
    }
    if listen.port() {
        let port = env_number::<u16>("ATEK_ASSIGNED_PORT")?.unwrap_or(0);
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
        let bound = listener.local_addr()?;
        if let Some(file) = std::env::var_os("ECHO_PORT_FILE").filter(|f| !f.is_empty()) {
            write_port_file(Path::new(&file), bound.port())?;
        }
        eprintln!("atek-echo-service: listening on http://{bound}");
        tokio::spawn(serve_tcp(listener, state));
    }

    wait_for_shutdown_signal().await?;
    if let Some(path) = socket_path {
        // Best effort: a leftover socket is removed at the next start anyway.
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Reads an optional numeric environment variable; unset or empty is `None`.
fn env_number<T>(name: &str) -> Result<Option<T>, BoxError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|e| format!("{name}={v:?} is not a valid number: {e}").into()),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(format!("{name}: {e}").into()),
    }
}

/// Removes a socket file left by an earlier run. Refuses to remove anything
/// that is not a socket.
fn remove_stale_socket(path: &Path) -> Result<(), BoxError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => Ok(std::fs::remove_file(path)?),
        Ok(_) => Err(format!("{} exists and is not a socket", path.display()).into()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display()).into()),
    }
}

/// Writes `port` to `file` atomically (write then rename), so a reader never
/// sees a partial number.
fn write_port_file(file: &Path, port: u16) -> Result<(), BoxError> {
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{port}\n"))
        .and_then(|()| std::fs::rename(&tmp, file))
        .map_err(|e| format!("cannot write ECHO_PORT_FILE {}: {e}", file.display()).into())
}

async fn wait_for_shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn serve_tcp(listener: TcpListener, state: &'static State) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                // Small request/response pairs: do not let Nagle delay them.
                let _ = stream.set_nodelay(true);
                serve_connection(stream, state);
            }
            Err(e) => accept_failed(e).await,
        }
    }
}

async fn serve_unix(listener: UnixListener, state: &'static State) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => serve_connection(stream, state),
            Err(e) => accept_failed(e).await,
        }
    }
}

async fn accept_failed(e: std::io::Error) {
    // Typically EMFILE: back off a little instead of spinning.
    eprintln!("atek-echo-service: accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

fn serve_connection<I>(io: I, state: &'static State)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let service = service_fn(move |req| handle(req, state));
        // Errors here are clients going away mid-request; nothing to do.
        let _ = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), service)
            .await;
    });
}

async fn handle(
    req: Request<Incoming>,
    state: &'static State,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == Method::POST {
        return Ok(rpc(req, state).await);
    }
    let path = req.uri().path();
    let root = path == "/";
    let response = match *req.method() {
        Method::GET | Method::HEAD if root && state.fail_ready => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            Bytes::from_static(b"not ready (ECHO_FAIL_READY)\n"),
        ),
        // hyper leaves the body out of HEAD responses.
        Method::GET | Method::HEAD if root => {
            reply(StatusCode::OK, TEXT, Bytes::from_static(BANNER))
        }
        Method::GET | Method::HEAD if path.starts_with("/bytes/") => {
            match byte_count(&path["/bytes/".len()..]) {
                Some(n) => reply(
                    StatusCode::OK,
                    OCTETS,
                    Bytes::from_static(&state.payload[..n]),
                ),
                None => reply(
                    StatusCode::BAD_REQUEST,
                    TEXT,
                    Bytes::from(format!(
                        "/bytes/{{n}} expects a whole number of bytes up to {MAX_BYTES}\n"
                    )),
                ),
            }
        }
        Method::GET | Method::HEAD => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            Bytes::from_static(b"not found\n"),
        ),
        _ => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            Bytes::from_static(b"method not allowed\n"),
        ),
    };
    Ok(response)
}

/// `n` of `/bytes/{n}`: decimal digits only, at most [`MAX_BYTES`].
fn byte_count(n: &str) -> Option<usize> {
    if n.is_empty() || n.len() > 9 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().filter(|&n| n <= MAX_BYTES)
}

async fn rpc(req: Request<Incoming>, state: &'static State) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                TEXT,
                Bytes::from(format!("cannot read request body: {e}\n")),
            );
        }
    };
    match dispatch(&body, Caller::from_headers(&parts.headers), &state.env_json) {
        Outcome::Json(out) => reply(StatusCode::OK, JSON, Bytes::from(out)),
        Outcome::Text(out) => reply(StatusCode::OK, TEXT, Bytes::from_static(out)),
        Outcome::After(delay, out) => {
            tokio::time::sleep(delay).await;
            reply(StatusCode::OK, JSON, Bytes::from(out))
        }
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// What the host says about the caller, from the request headers.
#[derive(Clone, Copy, Default)]
struct Caller<'a> {
    /// `atek-auth-user`.
    user: Option<&'a str>,
    /// `atek-auth-service`.
    service: Option<&'a str>,
    /// Whether any header named `x-forged*` is present (the gateway should strip them).
    forged: bool,
}

impl<'a> Caller<'a> {
    fn from_headers(headers: &'a HeaderMap) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            user: text("atek-auth-user"),
            service: text("atek-auth-service"),
            // Header names are stored lowercase.
            forged: headers.keys().any(|k| k.as_str().starts_with("x-forged")),
        }
    }
}

/// The response to one JSON-RPC call.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// A JSON-RPC response body.
    Json(Vec<u8>),
    /// A body that is not JSON at all.
    Text(&'static [u8]),
    /// A JSON-RPC response body, to send after a delay.
    After(Duration, Vec<u8>),
}

#[derive(Deserialize)]
struct RpcRequest<'a> {
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
}

/// Answers one JSON-RPC 2.0 request body.
///
/// Methods: `echo` (result: the params), `headers` (who the host says is
/// calling), `env` (`env_json`, precomputed), `sleep` (`[ms]`, result `true`),
/// `repeat` (`[n]`, result a string of `n` `x`s, up to [`MAX_BYTES`]: an answer
/// of a chosen size from a small request, for the gateway's `maxResponseBytes`),
/// `garbage` (a body that is not JSON), `fail` (error -32003); anything else
/// is -32601. A body that is not JSON is -32700, JSON that is not a request
/// is -32600.
fn dispatch(body: &[u8], caller: Caller<'_>, env_json: &str) -> Outcome {
    let req: RpcRequest<'_> = match serde_json::from_slice(body) {
        Ok(req) => req,
        Err(_) if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() => {
            return Outcome::Json(error(None, -32600, "Invalid Request", None));
        }
        Err(_) => return Outcome::Json(error(None, -32700, "Parse error", None)),
    };
    let id = req.id;
    Outcome::Json(match &*req.method {
        "echo" => success(id, req.params.map_or("[]", RawValue::get)),
        "headers" => {
            let result = serde_json::json!({
                "user": caller.user,
                "service": caller.service,
                "forged": caller.forged,
            });
            success(id, &result.to_string())
        }
        "env" => success(id, env_json),
        "sleep" => match req.params.and_then(first_u64) {
            Some(ms) => return Outcome::After(Duration::from_millis(ms), success(id, "true")),
            None => error(
                id,
                -32602,
                "Invalid params: sleep expects [milliseconds]",
                None,
            ),
        },
        "repeat" => match req.params.and_then(first_u64) {
            Some(n) if n <= MAX_BYTES as u64 => {
                let mut result = Vec::with_capacity(n as usize + 2);
                result.push(b'"');
                result.resize(n as usize + 1, b'x');
                result.push(b'"');
                // Only ASCII was written.
                success(id, std::str::from_utf8(&result).unwrap_or("null"))
            }
            _ => error(
                id,
                -32602,
                &format!("Invalid params: repeat expects [n], n up to {MAX_BYTES}"),
                None,
            ),
        },
        "garbage" => return Outcome::Text(GARBAGE),
        "fail" => error(id, -32003, "echo failure", Some(r#"{"why":"asked to"}"#)),
        other => error(id, -32601, &format!("Method not found: {other}"), None),
    })
}

/// The first element of a params array, as a non-negative integer.
fn first_u64(params: &RawValue) -> Option<u64> {
    let params: Vec<Value> = serde_json::from_str(params.get()).ok()?;
    params.first()?.as_u64()
}

fn success(id: Option<&RawValue>, result: &str) -> Vec<u8> {
    let id = id.map_or("null", RawValue::get);
    let mut out = Vec::with_capacity(36 + id.len() + result.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(br#","result":"#);
    out.extend_from_slice(result.as_bytes());
    out.push(b'}');
    out
}

/// `data`, when given, must already be serialized JSON.
fn error(id: Option<&RawValue>, code: i32, message: &str, data: Option<&str>) -> Vec<u8> {
    let id = id.map_or("null", RawValue::get);
    // `Value`'s Display escapes the string and cannot fail.
    let message = Value::from(message).to_string();
    let mut out = Vec::with_capacity(64 + id.len() + message.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(br#","error":{"code":"#);
    out.extend_from_slice(code.to_string().as_bytes());
    out.extend_from_slice(br#","message":"#);
    out.extend_from_slice(message.as_bytes());
    if let Some(data) = data {
        out.extend_from_slice(br#","data":"#);
        out.extend_from_slice(data.as_bytes());
    }
    out.extend_from_slice(b"}}");
    out
}

/// The `env` method's result: what the host passed, never the token itself.
fn env_json(vars: impl Iterator<Item = (OsString, OsString)>) -> String {
    let mut service_key = None;
    let mut host_port = None;
    let (mut has_socket, mut has_port, mut has_token, mut path) = (false, false, false, false);
    let mut config = serde_json::Map::new();
    for (name, value) in vars {
        let (Some(name), value) = (name.to_str(), value.to_string_lossy()) else {
            continue;
        };
        match name {
            "ATEK_ASSIGNED_SERVICE_KEY" => service_key = Some(value.into_owned()),
            "ATEK_HOST_PORT" => host_port = Some(value.into_owned()),
            "ATEK_ASSIGNED_SOCKET_FILE" => has_socket = !value.is_empty(),
            "ATEK_ASSIGNED_PORT" => has_port = !value.is_empty(),
            "ATEK_HOST_BEARER_TOKEN" => has_token = !value.is_empty(),
            "PATH" => path = true,
            _ if name.starts_with("ECHO_CFG_") => {
                config.insert(name.to_owned(), Value::from(value.into_owned()));
            }
            _ => {}
        }
    }
    serde_json::json!({
        "serviceKey": service_key,
        "hostPort": host_port,
        "hasSocket": has_socket,
        "hasPort": has_port,
        "hasToken": has_token,
        "path": path,
        "config": config,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(body: &str, caller: Caller<'_>) -> Value {
        match dispatch(body.as_bytes(), caller, r#"{"env":1}"#) {
            Outcome::Json(out) | Outcome::After(_, out) => {
                serde_json::from_slice(&out).expect("dispatch returned invalid JSON")
            }
            Outcome::Text(out) => panic!("unexpected text body {out:?}"),
        }
    }

    fn rpc(id: &str, method: &str, params: &str) -> String {
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#)
    }

    #[test]
    fn echo_returns_params_and_id_verbatim() {
        let params = r#"[1,"two",{"three":[3.5,null]},"\u00e9\"q"]"#;
        let got = call(&rpc(r#""abc-1""#, "echo", params), Caller::default());
        let want: Value = serde_json::from_str(params).expect("test params");
        assert_eq!(got["jsonrpc"], "2.0");
        assert_eq!(got["id"], "abc-1");
        assert_eq!(got["result"], want);
        assert!(got.get("error").is_none());

        let got = call(
            r#"{"jsonrpc":"2.0","id":7,"method":"echo"}"#,
            Caller::default(),
        );
        assert_eq!(got["id"], 7);
        assert_eq!(got["result"], serde_json::json!([]));
    }

    #[test]
    fn headers_reports_caller() {
        let caller = Caller {
            user: Some("alice"),
            service: None,
            forged: true,
        };
        let got = call(&rpc("1", "headers", "[]"), caller);
        assert_eq!(
            got["result"],
            serde_json::json!({"user": "alice", "service": null, "forged": true})
        );

        let mut headers = HeaderMap::new();
        headers.insert("atek-auth-service", HeaderValue::from_static("svc"));
        headers.insert("x-forged-user", HeaderValue::from_static("mallory"));
        let caller = Caller::from_headers(&headers);
        assert_eq!(caller.user, None);
        assert_eq!(caller.service, Some("svc"));
        assert!(caller.forged);
    }

    #[test]
    fn env_sleep_garbage_and_errors() {
        assert_eq!(
            call(&rpc("2", "env", "[]"), Caller::default())["result"]["env"],
            1
        );

        assert_eq!(
            dispatch(
                rpc("3", "sleep", "[25]").as_bytes(),
                Caller::default(),
                "{}"
            ),
            Outcome::After(
                Duration::from_millis(25),
                br#"{"jsonrpc":"2.0","id":3,"result":true}"#.to_vec()
            )
        );
        assert_eq!(
            call(&rpc("3", "sleep", r#"["x"]"#), Caller::default())["error"]["code"],
            -32602
        );

        let got = call(&rpc("7", "repeat", "[5]"), Caller::default());
        assert_eq!(got["result"], "xxxxx");
        assert_eq!(
            call(&rpc("7", "repeat", "[0]"), Caller::default())["result"],
            ""
        );
        assert_eq!(
            call(&rpc("7", "repeat", "[16777217]"), Caller::default())["error"]["code"],
            -32602
        );

        assert_eq!(
            dispatch(
                rpc("4", "garbage", "[]").as_bytes(),
                Caller::default(),
                "{}"
            ),
            Outcome::Text(b"this is not json")
        );

        let got = call(&rpc("5", "fail", "[]"), Caller::default());
        assert_eq!(
            got["error"],
            serde_json::json!({"code": -32003, "message": "echo failure", "data": {"why": "asked to"}})
        );
        assert_eq!(got["id"], 5);

        let got = call(&rpc("6", r#"no\"pe"#, "[]"), Caller::default());
        assert_eq!(
            got["error"],
            serde_json::json!({"code": -32601, "message": "Method not found: no\"pe"})
        );

        let got = call("{not json", Caller::default());
        assert_eq!(got["id"], Value::Null);
        assert_eq!(
            got["error"],
            serde_json::json!({"code": -32700, "message": "Parse error"})
        );
        assert_eq!(call("", Caller::default())["error"]["code"], -32700);
        assert_eq!(
            call(r#"{"method": 5,"#, Caller::default())["error"]["code"],
            -32700
        );
        assert_eq!(
            call(r#"{"id": 1}"#, Caller::default())["error"]["code"],
            -32600
        );
    }

    #[test]
    fn byte_counts() {
        assert_eq!(byte_count("0"), Some(0));
        assert_eq!(byte_count("1024"), Some(1024));
        assert_eq!(byte_count("001024"), Some(1024));
        assert_eq!(byte_count("16777216"), Some(MAX_BYTES));
        for bad in [
            "",
            "16777217",
            "999999999",
            "1234567890",
            "-1",
            "+1",
            "1k",
            "1 ",
            "0x10",
        ] {
            assert_eq!(byte_count(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn env_never_leaks_the_token() {
        let vars = [
            ("ATEK_ASSIGNED_SERVICE_KEY", "echo"),
            ("ATEK_HOST_PORT", "4000"),
            ("ATEK_HOST_BEARER_TOKEN", "s3cret-token"),
            ("ATEK_ASSIGNED_PORT", "5000"),
            ("PATH", "/bin"),
            ("ECHO_CFG_COLOR", "blue"),
            ("OTHER", "x"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let json = env_json(vars.into_iter());
        assert!(!json.contains("s3cret"));
        let got: Value = serde_json::from_str(&json).expect("env JSON");
        assert_eq!(
            got,
            serde_json::json!({
                "serviceKey": "echo", "hostPort": "4000", "hasSocket": false, "hasPort": true,
                "hasToken": true, "path": true, "config": {"ECHO_CFG_COLOR": "blue"},
            })
        );
    }
}
