//! `config.json`: the host's settings, typed, documented and validated.
//!
//! The original's fields keep their names (`domain`, `port`, `coreServices`,
//! `defaultMainService`, `serverDbId`, `systemAuthTokens`); ours are added beside them. A
//! missing file is an empty object; an unknown field, a wrong type or a bad value is an error
//! that names the field and says how to fix it. CLI flags override the file without being
//! written back.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use atek_core::BearerToken;
use serde::{Deserialize, Serialize};

/// The default HTTP port: above 1024, so a non-root user can bind it.
pub const DEFAULT_PORT: u16 = 8480;

/// The host's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// The hostname the host is reached by; apps are served at `{id}.{domain}`.
    /// Default `localhost`.
    pub domain: String,
    /// The HTTP port. Default 8480; 0 picks a free port (the one chosen is written to
    /// `run.json`).
    pub port: u16,
    /// The address to listen on. Default `0.0.0.0` (every interface, as the original did);
    /// `127.0.0.1` keeps the host to this machine.
    pub bind_address: IpAddr,
    /// Services loaded at every start, in order, owned by `system`. Default: none (the
    /// host's own providers are built in).
    pub core_services: Vec<CoreService>,
    /// Source installed as each new user's main service; `""` disables. Default `""`.
    pub default_main_service: String,
    /// The server database's id, kept for the ADB provider. Default: unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_db_id: Option<String>,
    /// Bearer tokens with full system rights; the CLI uses the first. Generated (one token
    /// of 64 hex characters) and written back when empty.
    pub system_auth_tokens: Vec<BearerToken>,
    /// How long a service may take to answer `HEAD /` after it starts before it is marked
    /// failed. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub ready_timeout: Duration,
    /// How long a service may take to exit after SIGTERM before it gets SIGKILL. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub stop_timeout: Duration,
    /// How long the gateway waits for a service's answer to one call, and an app's subdomain
    /// for an app to answer once the request has reached it (an upload still coming in
    /// counts as activity, so a long one is never cut off). Default `60s`.
    #[serde(with = "humantime_serde")]
    pub gateway_timeout: Duration,
    /// How long each git command of an install or update may run (a clone, a fetch; a server
    /// that never answers would otherwise hold up the host's start and the services-api
    /// call): then it is killed, with everything it started, and the install fails.
    /// Default `5m`.
    #[serde(with = "humantime_serde")]
    pub git_timeout: Duration,
    /// How long `npm install`, and `npm run build`, may each run when a service is installed
    /// or updated: then it is killed, with everything it started, and the install fails.
    /// Default `10m`.
    #[serde(with = "humantime_serde")]
    pub npm_timeout: Duration,
    /// The largest request body the gateway accepts, in bytes. Default 4 MiB.
    pub max_body_bytes: usize,
    /// The largest answer the gateway accepts from a service, in bytes. Default 32 MiB.
    pub max_response_bytes: usize,
    /// The wait before restarting a crashed service; it doubles on each crash, up to 30 s (a
    /// longer value is kept as it is). Default `500ms`.
    #[serde(with = "humantime_serde")]
    pub restart_delay: Duration,
    /// A service that crashes this many times within `crashLoopWindow` is marked failed and
    /// left stopped. Default 5.
    pub crash_loop_limit: u32,
    /// The window of `crashLoopLimit`. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub crash_loop_window: Duration,
    /// A service log is rotated when it grows past this many bytes. Default 1 MiB.
    pub log_max_bytes: u64,
    /// How many rotated logs to keep per service (`{id}.log.1` …). Default 3.
    pub log_files: u32,
    /// The Node.js program for `node` services. Default `node` (found on `PATH`).
    pub node_path: PathBuf,
    /// How many threads serve HTTP, each its own event loop; 0 (the default) means two per
    /// CPU (see [`Config::http_loops`]).
    pub http_threads: usize,
    /// How long a login lasts: a session ends this long after the login, or earlier on
    /// logout, a password change or the user's deletion. Default `30days`.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Whether users who are not admins may install services (and change where an installed
    /// one comes from). A service runs with the host's rights, so until services are
    /// sandboxed, a user who can install one can read everything the host can: its tokens,
    /// every account. Default `false`: only admins install; everyone gets
    /// `defaultMainService`.
    pub users_may_install: bool,
    /// Relay URLs for p2p: the home's node and the p2p commands (`atek beam`, `bind`,
    /// `gateway`, `serve`) without `--relay` use these. Empty: iroh's public relays and
    /// address lookup (unless `p2p.public` is false).
    pub relays: Vec<String>,
    /// PEM files whose certificates are trusted for the relays, on top of the public roots
    /// (a self-hosted relay's `cert.pem`, as `atek relay --self-signed` makes it).
    pub relay_ca: Vec<PathBuf>,
    /// The home's p2p node: its key is `node.key` in the config dir (made on first run).
    pub p2p: P2pConfig,
    /// How p2p peers are found by their key alone besides the relays (the home's node and
    /// the p2p commands given no lookup flags use it). Default: none of these.
    pub lookup: LookupConfig,
}

/// `lookup`: address lookups by key, each of which also publishes this node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LookupConfig {
    /// Announce and find peers on the local network with mDNS. Default `false`.
    pub mdns: bool,
    /// Publish to and look peers up on the BitTorrent mainline DHT. Default `false`.
    pub dht: bool,
    /// DHT nodes to join through (`host:port`); empty: the DHT's public bootstrap nodes.
    pub dht_bootstrap: Vec<String>,
    /// A pkarr relay to publish this node's record to, for DNS lookup (n0's:
    /// `https://dns.iroh.link/pkarr`); needs `dnsOrigin`.
    pub pkarr_relay: Option<url::Url>,
    /// The DNS zone peers' records are looked up under (n0's: `dns.iroh.link`).
    pub dns_origin: Option<String>,
    /// The DNS server to ask (`ip:port`); default the system's.
    pub dns_server: Option<std::net::SocketAddr>,
}

impl LookupConfig {
    /// The lookups for a [`NetConfig`](atek_net::NetConfig), or which field is missing.
    pub fn to_lookup(&self) -> Result<atek_net::Lookup, String> {
        let dns = match (&self.pkarr_relay, &self.dns_origin) {
            (Some(pkarr_relay), Some(origin)) => Some(atek_net::DnsLookup {
                pkarr_relay: pkarr_relay.clone(),
                origin: origin.clone(),
                nameserver: self.dns_server,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(
                    "lookup.pkarrRelay needs lookup.dnsOrigin, the DNS zone the \
                            relay's records are served under (dns.iroh.link for n0's)"
                        .to_owned(),
                );
            }
            (None, Some(_)) => {
                return Err("lookup.dnsOrigin needs lookup.pkarrRelay, where this node \
                            publishes its record (https://dns.iroh.link/pkarr for n0's)"
                    .to_owned());
            }
        };
        Ok(atek_net::Lookup {
            dns,
            dht: self.dht.then(|| atek_net::DhtLookup {
                bootstrap: self.dht_bootstrap.clone(),
            }),
            mdns: self.mdns,
        })
    }
}

/// `p2p`: how the home is reached by its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct P2pConfig {
    /// Answer HTTP over p2p on the node key, so that `atek bind HOMEKEY -p 8080` on a
    /// laptop anywhere reaches this home's web UI and apps, with the normal login. Default
    /// `false`.
    pub enabled: bool,
    /// With no `relays`, use iroh's public relays (n0's) and address lookup (DNS and pkarr).
    /// Default `true`.
    pub public: bool,
    /// Accept any TLS certificate from the relays: only for a local relay with a
    /// self-signed certificate, in builds for tests. Default `false`.
    pub insecure_relay_tls: bool,
    /// Ask the home router for a port mapping (UPnP, NAT-PMP, PCP), so that peers reach
    /// this home directly more often. The p2p commands follow it too (`--no-port-mapping`
    /// turns it off for one command). Default `true`.
    pub port_mapping: bool,
}

impl Default for P2pConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            public: true,
            insecure_relay_tls: false,
            port_mapping: true,
        }
    }
}

/// One entry of `coreServices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CoreService {
    /// Where it comes from: a folder (`file://…` or an absolute path) or a git URL.
    pub source_url: String,
    /// Its id; default `core.{last segment of the source}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A semver range of git tags; default the highest tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_version: Option<String>,
    /// Environment variables for it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            domain: "localhost".to_owned(),
            port: DEFAULT_PORT,
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            core_services: Vec::new(),
            default_main_service: String::new(),
            server_db_id: None,
            system_auth_tokens: Vec::new(),
            ready_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(5),
            gateway_timeout: Duration::from_secs(60),
            git_timeout: Duration::from_secs(5 * 60),
            npm_timeout: Duration::from_secs(10 * 60),
            max_body_bytes: 4 << 20,
            max_response_bytes: 32 << 20,
            restart_delay: Duration::from_millis(500),
            crash_loop_limit: 5,
            crash_loop_window: Duration::from_secs(60),
            log_max_bytes: 1 << 20,
            log_files: 3,
            node_path: PathBuf::from("node"),
            http_threads: 0,
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            users_may_install: false,
            relays: Vec::new(),
            relay_ca: Vec::new(),
            p2p: P2pConfig::default(),
            lookup: LookupConfig::default(),
        }
    }
}

/// Why config.json could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON, or a field has the wrong shape or value.
    #[error("{0}")]
    Invalid(Invalid),
}

/// A bad field, with where it is and how to fix it.
#[derive(Debug)]
pub struct Invalid {
    /// The file.
    pub path: PathBuf,
    /// The field's path, like `coreServices[0].sourceUrl`; empty for the whole file.
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.path.display();
        if self.field.is_empty() {
            writeln!(f, "{file}: {}", self.problem)?;
        } else {
            writeln!(f, "{file}: field `{}`: {}", self.field, self.problem)?;
        }
        write!(f, "fix: {}", self.fix)
    }
}

impl Config {
    /// How many HTTP event loops to run: `httpThreads`, or two per CPU when it is 0.
    ///
    /// Two per CPU, not one: the host shares its CPUs with the apps it serves. Each loop owns
    /// its connections, so when the scheduler preempts a busy loop to run an app, every
    /// request on it waits out the app's time slice. With twice as many loops each one has
    /// half the connections, finishes what is ready and sleeps before its slice runs out.
    /// Measured on 2 CPUs with 32 connections through the gateway (bench/README.md):
    /// preemptions per call 0.25-0.37 → 0.05, p99 about halved, req/s up ~5%; eight loops
    /// kept the p99 low but cost ~15% of the throughput.
    pub fn http_loops(&self) -> usize {
        match self.http_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()) * 2,
            n => n,
        }
    }

    /// Reads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parses and validates the text of a config file (`path` is for messages).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let invalid = |field: String, problem: String, fix: String| {
            ConfigError::Invalid(Invalid {
                path: path.to_owned(),
                field,
                problem,
                fix,
            })
        };
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let de = &mut serde_json::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." || field == "?" {
                String::new()
            } else {
                field
            };
            let inner = e.into_inner();
            let problem = inner.to_string();
            let fix = fix_for(&field, &problem, inner.is_syntax() || inner.is_eof());
            invalid(field, problem, fix)
        })?;
        config
            .validate()
            .map_err(|(field, problem, fix)| invalid(field, problem, fix))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String, String)> {
        if let Err(problem) = check_domain(&self.domain) {
            return Err(("domain".into(), problem, DOMAIN_FIX.into()));
        }
        for (i, token) in self.system_auth_tokens.iter().enumerate() {
            if token.expose().len() < 32 || !token.expose().bytes().all(|b| b.is_ascii_graphic()) {
                return Err((
                    format!("systemAuthTokens[{i}]"),
                    "a system token must be at least 32 printable characters".into(),
                    "remove it to have the host generate one, or use 64 random hex characters (openssl rand -hex 32)".into(),
                ));
            }
        }
        let positive = [
            ("readyTimeout", self.ready_timeout),
            ("stopTimeout", self.stop_timeout),
            ("gatewayTimeout", self.gateway_timeout),
            ("gitTimeout", self.git_timeout),
            ("npmTimeout", self.npm_timeout),
            ("crashLoopWindow", self.crash_loop_window),
            ("sessionTtl", self.session_ttl),
        ];
        for (field, d) in positive {
            if d.is_zero() {
                return Err((
                    field.into(),
                    "must be longer than zero".into(),
                    "use a duration such as \"5s\" or \"500ms\"".into(),
                ));
            }
        }
        if self.max_body_bytes < 1024 || self.max_response_bytes < 1024 {
            let field = if self.max_body_bytes < 1024 {
                "maxBodyBytes"
            } else {
                "maxResponseBytes"
            };
            return Err((
                field.into(),
                "must be at least 1024 bytes".into(),
                "use a byte count such as 4194304 (4 MiB)".into(),
            ));
        }
        if self.crash_loop_limit == 0 {
            return Err((
                "crashLoopLimit".into(),
                "must be at least 1".into(),
                "use a count such as 5".into(),
            ));
        }
        for (i, core) in self.core_services.iter().enumerate() {
            if core.source_url.trim().is_empty() {
                return Err((
                    format!("coreServices[{i}].sourceUrl"),
                    "must not be empty".into(),
                    "give a folder (file:///path or /path) or a git URL".into(),
                ));
            }
            if let Some(id) = &core.id
                && let Err(e) = id.parse::<atek_core::ServiceId>()
            {
                return Err((
                    format!("coreServices[{i}].id"),
                    e.to_string(),
                    "use letters, digits, '-', '_' and '.', such as \"core.adb\"".into(),
                ));
            }
        }
        Ok(())
    }

    /// Generates a system token when there is none. Returns true when one was added (and
    /// the file should be written back).
    pub fn ensure_system_token(&mut self) -> bool {
        if self.system_auth_tokens.is_empty() {
            self.system_auth_tokens.push(BearerToken::generate());
            true
        } else {
            false
        }
    }

    /// Writes the config back, pretty-printed, readable only by its owner (it holds tokens).
    /// Written to a temporary file and renamed, so a crash never leaves half a file.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_owned(),
            source,
        };
        let mut text = serde_json::to_string_pretty(self).map_err(|e| io(e.into()))?;
        text.push('\n');
        crate::fsutil::write_atomic(path, text.as_bytes(), 0o600).map_err(io)
    }
}

fn fix_for(field: &str, problem: &str, syntax: bool) -> String {
    if syntax {
        return "config.json must be one JSON object; check the line and column above (a trailing comma, a missing quote?)".into();
    }
    if problem.starts_with("unknown field") {
        return "remove the field or correct its spelling; README.md lists the fields (Configuration)".into();
    }
    let leaf = field.rsplit('.').next().unwrap_or(field);
    let leaf = leaf.split('[').next().unwrap_or(leaf);
    match leaf {
        "port" => "use a number from 0 to 65535 (0 picks a free port)".into(),
        "bindAddress" => "use an IP address such as \"0.0.0.0\" or \"127.0.0.1\"".into(),
        "readyTimeout" | "stopTimeout" | "gatewayTimeout" | "gitTimeout" | "npmTimeout"
        | "restartDelay" | "crashLoopWindow" => {
            "use a duration string such as \"5s\", \"500ms\" or \"2m\"".into()
        }
        "coreServices" => {
            "use a list of objects like {\"sourceUrl\": \"file:///path/to/app\"}".into()
        }
        "systemAuthTokens" => {
            "use a list of strings, or remove the field to have one generated".into()
        }
        "config" => "use an object of string values, such as {\"API_KEY\": \"…\"}".into(),
        _ => "correct the value's type as the message says".into(),
    }
}

/// How to write a domain, for errors about one.
pub const DOMAIN_FIX: &str =
    "use a DNS name such as \"localhost\" or \"home.example.com\" (no scheme, no port)";

/// Checks that `domain` is a host name apps can be served under (`{id}.{domain}`): DNS
/// labels of letters, digits and inner hyphens, no scheme, no port. The error says what is
/// wrong; [`DOMAIN_FIX`] says how to write one.
pub fn check_domain(domain: &str) -> Result<(), String> {
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{domain:?} is not a hostname"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("config.json"), text)
    }

    #[test]
    fn empty_and_missing_give_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(parse("{}").unwrap(), Config::default());
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Config::load(&dir.path().join("none.json")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn original_fields_parse() {
        let c = parse(
            r#"{"domain":"atek.example.com","port":80,"coreServices":[{"id":"core.x","sourceUrl":"file:///x","desiredVersion":"2.0.0","config":{"A":"b"}}],
                "defaultMainService":"","serverDbId":"ab","systemAuthTokens":["0123456789abcdef0123456789abcdef"]}"#,
        )
        .unwrap();
        assert_eq!(c.domain, "atek.example.com");
        assert_eq!(c.core_services[0].desired_version.as_deref(), Some("2.0.0"));
        assert_eq!(c.system_auth_tokens.len(), 1);
    }

    #[test]
    fn http_loops_default_to_two_per_cpu() {
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(Config::default().http_loops(), 2 * cpus);
        assert_eq!(parse(r#"{"httpThreads":3}"#).unwrap().http_loops(), 3);
    }

    #[test]
    fn durations_are_human() {
        let c =
            parse(r#"{"readyTimeout":"1s","restartDelay":"100ms","npmTimeout":"15m"}"#).unwrap();
        assert_eq!(c.ready_timeout, Duration::from_secs(1));
        assert_eq!(c.npm_timeout, Duration::from_secs(15 * 60));
        assert_eq!(c.git_timeout, Duration::from_secs(5 * 60));
        assert_eq!(c.restart_delay, Duration::from_millis(100));
    }

    #[test]
    fn save_then_load_round_trips_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let mut c = Config::default();
        assert!(c.ensure_system_token());
        assert!(!c.ensure_system_token());
        c.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), c);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
