//! The home, reachable by its key: the host answers HTTP over p2p on its node key
//! (`node.key` in the config dir), as `atek bind -p` would expose its port, so
//! `atek bind HOMEKEY -p 8080` on a laptop anywhere reaches the web UI and apps with the
//! normal login.
//!
//! Each request that comes over p2p carries `Atek-Remote-Public-Key: {caller's key}`, set
//! here ([`atek_net::caller`]) on every request of a connection (the original set it on the first only); a
//! request over plain HTTP never carries one (the server strips it). A p2p caller's address,
//! for rate limits and logs, is a unique-local IPv6 address derived from its key: never
//! loopback, so it is never trusted as a local proxy.

use std::net::{IpAddr, Ipv6Addr};

use atek_core::{PublicKey, SecretKey};
use atek_net::{NetConfig, NetError, Node};

use crate::config::Config;

/// How the home names a p2p caller on each request, as a port exposed with `atek bind` does.
pub(crate) use atek_net::caller::{name as name_caller, strip as strip_caller};

/// Reads the node key, or makes it on first run.
pub(crate) fn node_key(
    path: &std::path::Path,
) -> Result<SecretKey, atek_net::keyfile::KeyfileError> {
    let (key, origin) = atek_net::keyfile::load_or_create(path)?;
    if origin == atek_net::keyfile::Origin::Created {
        tracing::info!(key = %key.public(), path = %path.display(), "made this home's p2p key");
    }
    Ok(key)
}

/// The network settings of config.json (`relays`, `relayCa`, `p2p`, `lookup`).
pub(crate) fn net_config(config: &Config) -> Result<NetConfig, NetError> {
    let lookup = config
        .lookup
        .to_lookup()
        .map_err(|reason| NetError::Bind { reason })?;
    let relays = config
        .relays
        .iter()
        .map(|url| NetConfig::parse_relay(url))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NetConfig {
        relays,
        public: config.p2p.public,
        relay_ca: config.relay_ca.clone(),
        insecure_relay_tls: config.p2p.insecure_relay_tls,
        port_mapping: config.p2p.port_mapping,
        lookup,
        ..NetConfig::default()
    })
}

/// Starts the node that answers HTTP for this home.
pub(crate) async fn bind(key: &SecretKey, config: &Config) -> Result<Node, NetError> {
    Node::bind(key, &[atek_net::bind::ALPN], &net_config(config)?).await
}

/// The address a p2p caller is known by: `fd` then 15 bytes of a hash of its key.
pub(crate) fn caller_ip(key: &PublicKey) -> IpAddr {
    let hash = blake3::hash(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes[0] = 0xfd;
    bytes[1..].copy_from_slice(&hash.as_bytes()[..15]);
    IpAddr::V6(Ipv6Addr::from(bytes))
}

/// The home's domain for one p2p request, when its `Host` names this home's key as a label
/// (`{key}.localhost` through `atek gateway`, `{app}.{key}.localhost` for an app): the
/// names from that label on. Requests are placed under it instead of the configured domain.
#[derive(Debug, Clone)]
pub(crate) struct HomeDomain(pub(crate) String);

impl HomeDomain {
    pub(crate) fn of(host: &str, home: &PublicKey) -> Option<Self> {
        let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
        let key = home.to_string();
        let labels: Vec<&str> = name.split('.').collect();
        let at = labels.iter().position(|l| l.eq_ignore_ascii_case(&key))?;
        Some(Self(labels[at..].join(".").to_ascii_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atek_net::caller::REMOTE_PUBLIC_KEY;

    #[test]
    fn callers_are_named_and_never_loopback() {
        let key = SecretKey::from_seed([7; 32]).public();
        let mut headers = http::HeaderMap::new();
        headers.insert(REMOTE_PUBLIC_KEY, "forged".parse().unwrap());
        headers.append(REMOTE_PUBLIC_KEY, "forged too".parse().unwrap());
        headers.insert("atek_remote_public_key", "forged".parse().unwrap());
        headers.insert("atek-remote_public-key", "forged".parse().unwrap());
        headers.insert("atek-remote-public-keys", "kept".parse().unwrap());
        name_caller(&mut headers, &key);
        let all: Vec<_> = headers.get_all(REMOTE_PUBLIC_KEY).iter().collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].to_str().unwrap(), key.to_string());
        assert_eq!(headers.len(), 2, "{headers:?}");

        strip_caller(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("atek-remote-public-keys"));

        assert_eq!(
            HomeDomain::of(&format!("{key}.localhost:8080"), &key)
                .unwrap()
                .0,
            format!("{key}.localhost")
        );
        assert_eq!(
            HomeDomain::of(&format!("app.{key}.example.com"), &key)
                .unwrap()
                .0,
            format!("{key}.example.com")
        );
        assert!(HomeDomain::of("localhost:8080", &key).is_none());

        let ip = caller_ip(&key);
        assert!(!ip.is_loopback());
        assert_eq!(ip, caller_ip(&key));
        assert_ne!(ip, caller_ip(&SecretKey::from_seed([8; 32]).public()));
    }
}
