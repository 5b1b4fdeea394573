//! Counters of the RADIUS front door. Plain atomics, shared as `Arc<Stats>`; exported as
//! metrics later.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! stats {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        #[derive(Debug, Default)]
        pub struct Stats {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        impl Stats {
            /// `(name, value)` of every counter, for logs and tests.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

stats! {
    /// Datagrams received.
    received,
    /// Dropped: the source matches no configured client.
    dropped_unknown_client,
    /// Dropped: bad lengths (packet or attribute).
    dropped_malformed,
    /// Dropped: a code we do not serve on this port (Accounting, CoA, replies...).
    dropped_unsupported_code,
    /// Dropped: Message-Authenticator present but wrong (wrong secret or tampering).
    dropped_bad_message_authenticator,
    /// Dropped: Message-Authenticator missing where required.
    dropped_missing_message_authenticator,
    /// Dropped: Proxy-State without Message-Authenticator from a legacy client.
    dropped_proxy_state_without_message_authenticator,
    /// Dropped: an Accounting-Request whose Request Authenticator does not verify (RFC 2866 §3).
    dropped_bad_accounting_authenticator,
    /// Dropped: a retransmit of a request still in progress.
    dropped_duplicate_in_progress,
    /// Dropped: no capacity left (max_in_flight).
    dropped_overload,
    /// Rejected unheard: neither Message-Authenticator nor User-Password proves the client
    /// sent it (a client with `require_message_authenticator = false`).
    unverifiable,
    /// Retransmits answered with the cached reply.
    duplicates_answered_from_cache,
    /// Requests admitted through the reserved share for continuing logins (live State).
    admitted_reserved,
    status_server,
    access_accept,
    access_reject,
    access_challenge,
    accounting_response,
    /// Replies that could not be sent (socket errors, full send buffer).
    send_errors,
}

impl Stats {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
