//! The relay a community can host (`atek relay`): iroh's relay server, embedded.
//!
//! A relay does two things for the nodes that use it. It forwards their packets when they
//! cannot reach each other directly (it sees only ciphertext: every connection is end-to-end
//! encrypted between the two nodes' keys), and it tells each node the address it sees the
//! node's packets come from (QUIC address discovery, on UDP port 7842 by default), which is
//! what hole punching starts from.
//!
//! Clients must trust the relay's TLS certificate: a certificate from a public CA, or, for
//! a relay without one, a self-signed certificate made here ([`RelayTls::SelfSigned`]) that
//! clients are given as a CA file ([`crate::NetConfig::relay_ca`]). A client that does not
//! trust the certificate cannot use the relay at all, and it would not learn its public
//! address either: hole punching would then silently fall back to relaying.
//!
//! Anyone who can reach the relay may use it (no access control): what it relays is
//! encrypted, and it is as open as iroh's public relays.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use iroh::tls::CaTlsConfig;
use iroh::{RelayConfig, RelayUrl};
use iroh_relay::RelayQuicConfig;
use iroh_relay::server::{self as relay_server, CertConfig, QuicConfig, Server, SpawnError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::NetError;

/// The UDP port clients expect QUIC address discovery on unless told otherwise.
pub const DEFAULT_QUIC_PORT: u16 = iroh_relay::defaults::DEFAULT_RELAY_QUIC_PORT;

/// The file a self-signed certificate is written to, in its folder: the file to give
/// clients as their relay CA.
pub const SELF_SIGNED_CERT: &str = "cert.pem";
/// The file the self-signed certificate's private key is written to (mode 0600).
pub const SELF_SIGNED_KEY: &str = "key.pem";

/// Where the relay's TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayTls {
    /// A certificate chain and its private key, both PEM (for instance from Let's
    /// Encrypt's certbot, or from one's own CA).
    Manual {
        /// The certificate chain, the relay's own certificate first.
        cert_file: PathBuf,
        /// Its private key (PKCS#8, PKCS#1 or SEC1).
        key_file: PathBuf,
    },
    /// A self-signed certificate for [`RelayOptions::hostnames`], made on the first start
    /// and kept in `dir` ([`SELF_SIGNED_CERT`], [`SELF_SIGNED_KEY`]) for the next ones, so
    /// that the file clients were given stays valid. Delete the folder to make a new one
    /// (after changing the host names, say).
    SelfSigned {
        /// The folder of the certificate and its key (created if missing).
        dir: PathBuf,
    },
}

/// How to run a relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOptions {
    /// The names clients reach the relay by (DNS names or IP addresses): the first one is in
    /// the URL given to clients, and a self-signed certificate is made for all of them.
    /// Needed with TLS; in dev mode the bound address (or `localhost`) when empty.
    pub hostnames: Vec<String>,
    /// Plain HTTP (TCP). With TLS it serves only captive-portal checks; in dev mode it is
    /// the relay.
    pub http_bind: SocketAddr,
    /// HTTPS (TCP): the relay itself. Unused in dev mode.
    pub https_bind: SocketAddr,
    /// QUIC address discovery (UDP), `None` to serve none. It needs TLS: there is none in
    /// dev mode.
    pub quic_bind: Option<SocketAddr>,
    /// The TLS certificate; `None` is dev mode: the relay on plain HTTP, which clients
    /// reach with an `http://` URL. For trying things out only: anyone between a client
    /// and the relay can then impersonate the relay (not the peers: connections between
    /// nodes stay end-to-end encrypted).
    pub tls: Option<RelayTls>,
}

impl Default for RelayOptions {
    /// The standard ports (80, 443 and 7842) on every interface; no TLS yet (dev mode).
    fn default() -> Self {
        let any = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        Self {
            hostnames: Vec::new(),
            http_bind: SocketAddr::new(any, iroh_relay::defaults::DEFAULT_HTTP_PORT),
            https_bind: SocketAddr::new(any, iroh_relay::defaults::DEFAULT_HTTPS_PORT),
            quic_bind: Some(SocketAddr::new(any, DEFAULT_QUIC_PORT)),
            tls: None,
        }
    }
}

/// One of the sockets a relay listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayListener {
    /// Plain HTTP (TCP).
    Http,
    /// HTTPS (TCP).
    Https,
    /// QUIC address discovery (UDP).
    Quic,
}

impl fmt::Display for RelayListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Http => "HTTP",
            Self::Https => "HTTPS",
            Self::Quic => "QUIC address discovery",
        })
    }
}

/// What a running relay has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayStats {
    /// Relay connections accepted from nodes.
    pub clients: u64,
    /// QUIC address discovery connections that completed their handshake.
    pub address_discoveries: u64,
    /// Bytes received from nodes to be relayed.
    pub bytes_relayed: u64,
}

/// A running relay. It stops when dropped; [`RelayHandle::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct RelayHandle {
    server: Server,
    url: RelayUrl,
    ca_file: Option<PathBuf>,
    made_cert: bool,
}

/// Starts a relay. It listens once this returns; an error says which socket could not
/// be bound (a port in use, a privileged port) or which certificate file is wrong.
pub async fn run_relay(options: RelayOptions) -> Result<RelayHandle, NetError> {
    let mut made_cert = false;
    let mut ca_file = None;
    let server_config = match &options.tls {
        None => None,
        Some(RelayTls::Manual {
            cert_file,
            key_file,
        }) => Some(tls_server_config(cert_file, key_file)?),
        Some(RelayTls::SelfSigned { dir }) => {
            if options.hostnames.is_empty() {
                return Err(NetError::RelayOptions {
                    reason:
                        "a self-signed certificate needs the host names clients reach the relay by"
                            .to_owned(),
                });
            }
            let (cert, key, made) = self_signed(dir, &options.hostnames)?;
            made_cert = made;
            let config = tls_server_config(&cert, &key)?;
            ca_file = Some(cert);
            Some(config)
        }
    };
    if server_config.is_some() && options.hostnames.is_empty() {
        return Err(NetError::RelayOptions {
            reason: "a relay with TLS needs the host name its certificate is for, to give clients its URL".to_owned(),
        });
    }

    let mut relay = relay_server::RelayConfig::new(options.http_bind);
    let mut quic = None;
    if let Some(server_config) = server_config {
        // The QUIC server takes the HTTPS server's TLS configuration.
        quic = options.quic_bind.map(QuicConfig::new);
        relay.tls = Some(relay_server::TlsConfig::new(
            options.https_bind,
            CertConfig::Manual { server_config },
        ));
    }
    let tls = relay.tls.is_some();
    let mut config = relay_server::ServerConfig::default();
    config.relay = Some(relay);
    config.quic = quic;
    let server = Server::spawn(config)
        .await
        .map_err(|e| spawn_error(e, &options))?;

    let (scheme, addr, default_port) = if tls {
        ("https", server.https_addr(), 443)
    } else {
        ("http", server.http_addr(), 80)
    };
    let addr = addr.ok_or_else(|| NetError::RelayOptions {
        reason: "the relay server started without its listening address".to_owned(),
    })?;
    let host = match options.hostnames.first() {
        Some(host) => host.clone(),
        None if addr.ip().is_unspecified() => "localhost".to_owned(),
        None => addr.ip().to_string(),
    };
    let url = relay_url(scheme, &host, addr.port(), default_port)?;
    Ok(RelayHandle {
        server,
        url,
        ca_file,
        made_cert,
    })
}

impl RelayHandle {
    /// The URL clients give as their relay.
    pub fn url(&self) -> &RelayUrl {
        &self.url
    }

    /// The relay as a client's [`crate::NetConfig::relays`] entry: its URL and the port of
    /// its QUIC address discovery (none when it serves none).
    pub fn relay_config(&self) -> RelayConfig {
        RelayConfig::new(
            self.url.clone(),
            self.quic_addr().map(|a| RelayQuicConfig::new(a.port())),
        )
    }

    /// The self-signed certificate clients trust the relay with
    /// ([`crate::NetConfig::relay_ca`]); `None` with a certificate of one's own.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// Whether the self-signed certificate was made by this start (false: it was already
    /// in its folder).
    pub fn made_certificate(&self) -> bool {
        self.made_cert
    }

    /// The plain HTTP socket.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.server.http_addr()
    }

    /// The HTTPS socket (none in dev mode).
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.server.https_addr()
    }

    /// The QUIC address discovery socket (UDP), if it serves it.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.server.quic_addr()
    }

    /// What it has done so far.
    pub fn stats(&self) -> RelayStats {
        let m = &self.server.metrics().server;
        RelayStats {
            clients: m.accepts.get(),
            address_discoveries: m.qad_connections.get(),
            bytes_relayed: m.bytes_recv.get(),
        }
    }

    /// Waits until the relay stops by itself, which it does only when one of its parts
    /// failed: the error says why.
    pub async fn stopped(&mut self) -> NetError {
        let reason = match self.server.join().await {
            Ok(Ok(())) => "one of its listeners closed".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        NetError::RelayStopped { reason }
    }

    /// Stops accepting, closes every connection and waits for the server's tasks to end.
    pub async fn shutdown(self) -> Result<(), NetError> {
        self.server
            .shutdown()
            .await
            .map_err(|e| NetError::RelayStopped {
                reason: e.to_string(),
            })
    }
}

/// A node's TLS trust for relays given CA files ([`crate::NetConfig::relay_ca`]): the
/// certificates in `files` in addition to iroh's default roots (Mozilla's, compiled
/// in), so that a node can use a self-hosted relay and relays with public certificates
/// side by side (n0's, or one with a Let's Encrypt certificate). Every certificate must
/// parse: one that does not is an error naming its file, not a silent skip.
pub(crate) fn ca_tls_config(files: &[PathBuf]) -> Result<CaTlsConfig, NetError> {
    let mut roots = Vec::new();
    for file in files {
        let bad = |reason: String| NetError::RelayCa {
            path: file.clone(),
            reason,
        };
        let pem = fs::read(file).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("it is not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(bad(
                "it has no certificate (no BEGIN CERTIFICATE block)".to_owned()
            ));
        }
        for cert in certs {
            // What iroh's verifier would otherwise skip quietly.
            rustls::RootCertStore::empty()
                .add(cert.clone())
                .map_err(|e| bad(format!("a certificate in it does not parse: {e}")))?;
            roots.push(cert);
        }
    }
    Ok(CaTlsConfig::embedded().with_extra_roots(roots))
}

/// The relay's TLS server configuration from PEM files.
fn tls_server_config(cert_file: &Path, key_file: &Path) -> Result<rustls::ServerConfig, NetError> {
    let bad = |path: &Path, reason: String| NetError::RelayCert {
        path: path.to_owned(),
        reason,
    };
    let pem = fs::read(cert_file).map_err(|e| bad(cert_file, format!("cannot read it: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert_file, format!("it is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            cert_file,
            "it has no certificate (no BEGIN CERTIFICATE block)".to_owned(),
        ));
    }
    let pem = fs::read(key_file).map_err(|e| bad(key_file, format!("cannot read it: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| bad(key_file, format!("it has no private key in PEM: {e}")))?;
    rustls::ServerConfig::builder_with_provider(iroh::tls::default_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert_file, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            bad(
                cert_file,
                format!(
                    "it cannot be used with the key in {}: {e}",
                    key_file.display()
                ),
            )
        })
}

/// The self-signed certificate and key in `dir`, made for `hostnames` if neither is there.
/// Returns their paths and whether they were made now.
fn self_signed(dir: &Path, hostnames: &[String]) -> Result<(PathBuf, PathBuf, bool), NetError> {
    let cert = dir.join(SELF_SIGNED_CERT);
    let key = dir.join(SELF_SIGNED_KEY);
    match (cert.exists(), key.exists()) {
        (true, true) => return Ok((cert, key, false)),
        (false, false) => {}
        (has_cert, _) => {
            let (there, missing) = if has_cert {
                (&cert, &key)
            } else {
                (&key, &cert)
            };
            return Err(NetError::RelayCert {
                path: missing.clone(),
                reason: format!(
                    "it is missing while {} is there; remove {} to have a new certificate made",
                    there.display(),
                    there.display()
                ),
            });
        }
    }
    let io = |path: &Path, what: &str, e: std::io::Error| NetError::RelayCert {
        path: path.to_owned(),
        reason: format!("cannot {what} it: {e}"),
    };
    let mut params =
        rcgen::CertificateParams::new(hostnames.to_vec()).map_err(|e| NetError::RelayOptions {
            reason: format!("cannot make a certificate for {hostnames:?}: {e}"),
        })?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("Atek relay {}", hostnames.join(" ")),
    );
    let signing_key = rcgen::KeyPair::generate().map_err(|e| NetError::RelayOptions {
        reason: format!("cannot make a key for the certificate: {e}"),
    })?;
    let made = params
        .self_signed(&signing_key)
        .map_err(|e| NetError::RelayOptions {
            reason: format!("cannot make a certificate for {hostnames:?}: {e}"),
        })?;
    fs::create_dir_all(dir).map_err(|e| io(dir, "create", e))?;
    // The key first, never over an existing file: a certificate without its key is
    // useless, a key without its certificate is reported above.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)
        .map_err(|e| io(&key, "create", e))?;
    file.write_all(signing_key.serialize_pem().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io(&key, "write", e))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&cert)
        .map_err(|e| io(&cert, "create", e))?;
    file.write_all(made.pem().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io(&cert, "write", e))?;
    Ok((cert, key, true))
}

/// `scheme://host[:port]`, the port left out when it is the scheme's default.
fn relay_url(scheme: &str, host: &str, port: u16, default_port: u16) -> Result<RelayUrl, NetError> {
    let host = match host.parse::<Ipv6Addr>() {
        Ok(ip) => format!("[{ip}]"),
        Err(_) => host.to_owned(),
    };
    let text = if port == default_port {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}:{port}")
    };
    text.parse::<RelayUrl>()
        .map_err(|e| NetError::RelayOptions {
            reason: format!(
                "'{host}' does not make a URL ({text}: {e}); give a DNS name or an IP address"
            ),
        })
}

/// Names the socket that could not be bound, from iroh-relay's error.
fn spawn_error(e: SpawnError, options: &RelayOptions) -> NetError {
    let relay_listener = if options.tls.is_some() {
        RelayListener::Https
    } else {
        RelayListener::Http
    };
    match e {
        SpawnError::BindTcpListener { source, addr, .. } => NetError::RelayListen {
            listener: relay_listener,
            addr,
            source,
        },
        // With TLS, the plain HTTP listener.
        SpawnError::BindTlsListener { source, .. } => NetError::RelayListen {
            listener: RelayListener::Http,
            addr: options.http_bind,
            source,
        },
        SpawnError::QuicSpawn { source, .. } => {
            let io = std::iter::successors(std::error::Error::source(&source), |e| e.source())
                .find_map(|e| e.downcast_ref::<std::io::Error>());
            match (io, options.quic_bind) {
                (Some(io), Some(addr)) => NetError::RelayListen {
                    listener: RelayListener::Quic,
                    addr,
                    source: std::io::Error::new(io.kind(), io.to_string()),
                },
                _ => NetError::RelayOptions {
                    reason: format!("cannot start QUIC address discovery: {source}"),
                },
            }
        }
        other => NetError::RelayOptions {
            reason: other.to_string(),
        },
    }
}

/// The message of [`NetError::RelayListen`].
pub(crate) fn listen_message(
    listener: RelayListener,
    addr: &SocketAddr,
    source: &std::io::Error,
) -> String {
    let why = match source.kind() {
        ErrorKind::AddrInUse => "the port is in use".to_owned(),
        ErrorKind::PermissionDenied => {
            "not allowed (ports below 1024 need root or the CAP_NET_BIND_SERVICE capability)"
                .to_owned()
        }
        ErrorKind::AddrNotAvailable => "this machine has no such address".to_owned(),
        _ => source.to_string(),
    };
    format!("the relay cannot listen for {listener} on {addr}: {why}")
}
