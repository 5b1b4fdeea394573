//! One received RADIUS datagram, through everything the server does to it before (and
//! instead of) asking the engine: the raw length/attribute checks, State and Proxy-State
//! look-ups, Message-Authenticator verification, the `radius`-crate decoding of User-Name,
//! User-Password (decrypted with the shared secret), State, NAS-IP/IPv6-Address,
//! NAS-Identifier and Calling-Station-Id, and the replies it would send (Status-Server's
//! Accept, a Reject carrying a Reply-Message), with every Proxy-State echoed.
//!
//! Input: the datagram, as `recv_from` hands it to `handle_datagram` (at most 4096 octets).

#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use vip_bridge::radius::clients::{parse_address, Client};
use vip_bridge::radius::packet as pkt;
use vip_bridge::radius::server;
use vip_core::engine::LoginPolicy;
use vip_core::secret::Secret;

/// The shared secret of the fixed client (the seeds are signed with it).
const SECRET: &str = "testing123";
/// The server's receive buffer (server.rs RECV_BUFFER): longer datagrams are cut to this.
const RECV_BUFFER: usize = 4096;

fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        Client::new(
            "fuzz".into(),
            parse_address("0.0.0.0/0").expect("a valid CIDR"),
            Secret::new(SECRET),
            "default".into(),
            Arc::new(LoginPolicy::default()),
            false,
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let datagram = &data[..data.len().min(RECV_BUFFER)];
    let client = client();

    let Ok((info, packet)) = pkt::check(datagram) else {
        return;
    };
    assert_eq!(packet.len(), info.len);
    assert!(packet.len() <= datagram.len());
    assert!((pkt::HEADER_LEN..=pkt::MAX_PACKET_LEN).contains(&packet.len()));
    if let Some(state) = info.state(packet) {
        assert!(state.len() <= pkt::MAX_ATTR_VALUE);
    }
    let attrs = pkt::attributes(packet).expect("check() accepted the attributes");
    let proxy = pkt::proxy_states(packet);
    assert_eq!(info.has_proxy_state, !proxy.is_empty());
    assert_eq!(
        proxy.len(),
        attrs
            .iter()
            .filter(|(_, t, _)| *t == pkt::ATTR_PROXY_STATE)
            .count()
    );
    if let Some(off) = info.message_authenticator {
        let _ = pkt::verify_message_authenticator(&client.mac, packet, off);
    }

    // Status-Server's answer, and a Reject with a message, as the server builds them. When a
    // reply fits, it must itself be a well-formed packet that echoes every Proxy-State.
    let message = pkt::split_reply_message("Wrong code");
    let reject: Vec<pkt::ReplyAttr<'_>> = message
        .iter()
        .map(|v| (pkt::ATTR_REPLY_MESSAGE, *v))
        .collect();
    for (code, attrs) in [
        (pkt::CODE_ACCESS_ACCEPT, &[][..]),
        (pkt::CODE_ACCESS_REJECT, &reject[..]),
    ] {
        if let Some(reply) = server::build_reply(client, &info, packet, code, attrs) {
            let (rinfo, rpacket) = pkt::check(&reply).expect("our reply is well formed");
            assert_eq!(rinfo.code, code);
            assert_eq!(rinfo.identifier, info.identifier);
            assert_eq!(rinfo.message_authenticator, Some(pkt::HEADER_LEN));
            assert_eq!(pkt::proxy_states(rpacket), proxy);
        }
    }

    // What `process` decodes (User-Name, User-Password, State, NAS addresses...). The server
    // only gets here for an Access-Request that passed the Message-Authenticator rules, which
    // random input cannot forge; decoding does not depend on either, so it runs for all.
    let _ = server::decode(client, &info, packet);
});
