//! The RADIUS client table: who may talk to us, matched by source address (exact IP or CIDR,
//! most specific wins), each with its own shared secret, policy and Message-Authenticator rule.
//! Everything a packet needs from its client is computed once here, at start.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use vip_core::engine::LoginPolicy;
use vip_core::secret::Secret;

use crate::radius::packet::{mac_key, MacKey};

/// One configured RADIUS client, ready to use.
pub struct Client {
    pub name: String,
    pub net: IpNet,
    secret: Secret,
    /// HMAC-MD5 keyed with the secret, cloned per packet.
    pub mac: MacKey,
    pub policy_name: String,
    pub policy: Arc<LoginPolicy>,
    pub require_message_authenticator: bool,
    /// Its place in the [`ClientTable`] (0 outside one): the key of per-client tables
    /// sized at start, such as the drop-warning limiters.
    position: usize,
}

impl Client {
    pub fn new(
        name: String,
        net: IpNet,
        secret: Secret,
        policy_name: String,
        policy: Arc<LoginPolicy>,
        require_message_authenticator: bool,
    ) -> Client {
        let mac = mac_key(secret.expose().as_bytes());
        Client {
            name,
            net,
            secret,
            mac,
            policy_name,
            policy,
            require_message_authenticator,
            position: 0,
        }
    }

    /// Its place in the table it belongs to: `0..table.len()`.
    pub fn position(&self) -> usize {
        self.position
    }

    /// The shared secret, for User-Password decryption and Response Authenticators.
    pub fn secret(&self) -> &[u8] {
        self.secret.expose().as_bytes()
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("net", &self.net)
            .field("policy", &self.policy_name)
            .field(
                "require_message_authenticator",
                &self.require_message_authenticator,
            )
            .finish_non_exhaustive()
    }
}

/// Parses a client address: an IP (a /32 or /128) or a CIDR whose host bits are zero.
pub fn parse_address(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(canonical(ip)));
    }
    let net: IpNet = s.parse().map_err(|_| {
        format!("{s:?} is neither an IP address nor a CIDR (10.0.0.0/8, 2001:db8::/32)")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// IPv4-mapped IPv6 sources (`::ffff:10.0.0.1`, from a dual-stack socket) match IPv4 entries.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Clients ordered most specific first, so the first match is the best one.
#[derive(Debug, Default)]
pub struct ClientTable {
    clients: Vec<Arc<Client>>,
}

impl ClientTable {
    /// Builds the table. Two clients with the same network are refused by the config loader
    /// before this point; here equal prefixes keep their configured order.
    pub fn new(mut clients: Vec<Client>) -> ClientTable {
        clients.sort_by_key(|c| std::cmp::Reverse(c.net.prefix_len()));
        ClientTable {
            clients: clients
                .into_iter()
                .enumerate()
                .map(|(position, mut c)| {
                    c.position = position;
                    Arc::new(c)
                })
                .collect(),
        }
    }

    /// The most specific client whose network contains `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Arc<Client>> {
        let ip = canonical(ip);
        self.clients.iter().find(|c| c.net.contains(&ip))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Client>> {
        self.clients.iter()
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str, addr: &str) -> Client {
        Client::new(
            name.into(),
            parse_address(addr).unwrap(),
            Secret::new("s"),
            "default".into(),
            Arc::new(LoginPolicy::default()),
            true,
        )
    }

    #[test]
    fn most_specific_match_wins_whatever_the_order() {
        let table = ClientTable::new(vec![
            client("all", "0.0.0.0/0"),
            client("lan", "10.0.0.0/8"),
            client("host", "10.1.2.3"),
            client("subnet", "10.1.0.0/16"),
            client("v6", "2001:db8::/32"),
        ]);
        let name = |ip: &str| table.lookup(ip.parse().unwrap()).map(|c| c.name.clone());
        assert_eq!(name("10.1.2.3").as_deref(), Some("host"));
        assert_eq!(name("10.1.2.4").as_deref(), Some("subnet"));
        assert_eq!(name("10.2.0.1").as_deref(), Some("lan"));
        assert_eq!(name("192.0.2.1").as_deref(), Some("all"));
        assert_eq!(name("::ffff:10.1.2.3").as_deref(), Some("host"));
        assert_eq!(name("2001:db8::1").as_deref(), Some("v6"));
        assert_eq!(name("2001:db9::1"), None);
    }

    #[test]
    fn positions_number_the_table_from_zero() {
        let table = ClientTable::new(vec![
            client("all", "0.0.0.0/0"),
            client("host", "10.1.2.3"),
            client("lan", "10.0.0.0/8"),
        ]);
        let positions: Vec<usize> = table.iter().map(|c| c.position()).collect();
        assert_eq!(positions, vec![0, 1, 2]);
        let host = table.lookup("10.1.2.3".parse().unwrap()).unwrap();
        assert_eq!(host.position(), 0);
    }

    #[test]
    fn unknown_sources_match_nothing() {
        let table = ClientTable::new(vec![client("host", "127.0.0.1")]);
        assert!(table.lookup("127.0.0.2".parse().unwrap()).is_none());
        assert!(table.lookup("::1".parse().unwrap()).is_none());
    }

    #[test]
    fn addresses_parse_strictly() {
        assert_eq!(parse_address("10.0.0.1").unwrap().prefix_len(), 32);
        assert_eq!(parse_address("::1").unwrap().prefix_len(), 128);
        assert_eq!(parse_address("10.0.0.0/8").unwrap().prefix_len(), 8);
        assert!(parse_address("10.0.0.1/8")
            .unwrap_err()
            .contains("host bits"));
        assert!(parse_address("10.0.0.0/33").is_err());
        assert!(parse_address("vpn.example").is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = Client::new(
            "x".into(),
            parse_address("10.0.0.1").unwrap(),
            Secret::new("hunter2"),
            "default".into(),
            Arc::new(LoginPolicy::default()),
            true,
        );
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
