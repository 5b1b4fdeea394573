//! Sealed, expiring, single-use State tokens for multi-round logins.
//!
//! A Challenge's State is everything the next round needs, sealed with XChaCha20-Poly1305 under
//! a server key. Any instance holding the key can continue the login (a NAS may fail over
//! mid-login). The token must fit one RADIUS State attribute (253 bytes), so the layout is a
//! compact binary one rather than JSON:
//!
//! ```text
//! State     = base64url-no-pad(token)     (printable: NASes that keep State as a C string
//!                                          cut binary ones at the first zero octet)
//! token     = version(1) || nonce(24) || AEAD(plaintext, aad = version)
//! plaintext = expires_unix_ms(8) || user_tag(16) || client_tag(8) || step(1) || fields
//! fields    = len(1)-prefixed strings, per step
//! ```
//! `user_tag` / `client_tag` are truncated SHA-256 digests of the lower-cased user name and of the
//! front door + client name: they bind the State without spending bytes on long names.
//! The nonce doubles as the token's identity for single use: an opened token's nonce is
//! remembered until the token would have expired anyway. Binary tokens (issued before States
//! were printable) are still opened until they expire: they start with the version octet,
//! which base64url never does.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::secret::Secret;

/// Tokens without a key id (opened with every key; no longer issued).
const VERSION: u8 = 1;
/// Tokens naming their key: `2 || key id || nonce || AEAD(plain, aad = 2 || key id)`.
const VERSION_KID: u8 = 2;
/// At most this many keys in a key file (the current one and those being retired).
const MAX_KEYS: usize = 8;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// RADIUS State is one attribute: 253 bytes of value.
pub const MAX_TOKEN_LEN: usize = 253;

/// Where a multi-round login stands. Everything the next round needs, nothing more.
#[derive(Clone, PartialEq, Eq)]
pub enum Step {
    /// A factor menu was shown; the answer is a choice or a code.
    Menu,
    /// VIP answered 604A for `first_code`; the answer is the next code.
    NextCode {
        first_code: Secret,
        pin: Option<Secret>,
    },
    /// A code was sent by SMS or voice; the answer is that code.
    SentCode { voice: bool },
    /// A push is pending (challenge push mode); the answer is empty (or a code).
    Push {
        transaction_id: String,
        number: Option<String>,
    },
    /// The upstream RADIUS server (first factor) asked a question; the answer goes back to it.
    /// Its State lives in the login's first-factor session, which the token names.
    Upstream,
    /// In-band enrollment of a user with no usable credential (seed 002's enrollment states).
    Enroll(EnrollStep),
    /// The user asked to reset (resynchronise) their token: the answer is its current code,
    /// then the next one (`NextCode`).
    ResetCode,
    /// VIP accepted the PIN but it has expired: the answer is a new PIN.
    NewPin,
    /// The new PIN, asked again: the answer must match (`digest` is SHA-256 of the first,
    /// truncated; the token is sealed, so it is never readable outside).
    ConfirmPin { digest: [u8; 16] },
}

/// Where an in-band enrollment stands; each names the PingFederate VIP adapter state it mirrors.
#[derive(Clone, PartialEq, Eq)]
pub enum EnrollStep {
    /// `VIP_ENROLLMENT`: the answer is the kind of credential to add (`token`, `sms`, `voice`).
    Choose,
    /// `VIP_CREDENTIAL_REQUIRED`: the answer is a VIP Access credential ID.
    TokenId,
    /// `submitVIPCredential`: the answer is the credential's current code.
    TokenCode { credential_id: String },
    /// VIP asked for a second code (604A) to add `credential_id`: the answer is the next code.
    TokenNextCode {
        credential_id: String,
        first_code: Secret,
    },
    /// `VIP_SMS_CREDENTIAL_REQUIRED` / `VIP_VOICE_CREDENTIAL_REQUIRED`: the answer is a phone
    /// number.
    Phone { voice: bool },
    /// `VIP_SMS_CREDENTIAL_VERIFICATION_REQUIRED` (or voice): a code was sent to `phone`; the
    /// answer is that code (`validateSecurityCode`).
    PhoneCode { voice: bool, phone: String },
}

impl std::fmt::Debug for Step {
    // Never print codes or PINs held in a step.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Menu => f.write_str("Menu"),
            Step::NextCode { .. } => f.write_str("NextCode"),
            Step::SentCode { voice } => write!(f, "SentCode{{voice: {voice}}}"),
            Step::Push { .. } => f.write_str("Push"),
            Step::Upstream => f.write_str("Upstream"),
            Step::Enroll(e) => write!(f, "Enroll{e:?}"),
            Step::ResetCode => f.write_str("ResetCode"),
            Step::NewPin => f.write_str("NewPin"),
            Step::ConfirmPin { .. } => f.write_str("ConfirmPin"),
        }
    }
}

impl std::fmt::Debug for EnrollStep {
    // Neither codes nor phone numbers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EnrollStep::Choose => "Choose",
            EnrollStep::TokenId => "TokenId",
            EnrollStep::TokenCode { .. } => "TokenCode",
            EnrollStep::TokenNextCode { .. } => "TokenNextCode",
            EnrollStep::Phone { .. } => "Phone",
            EnrollStep::PhoneCode { .. } => "PhoneCode",
        })
    }
}

/// A first-factor session's handle: what a State carries when the login's directory password
/// was checked in an earlier round (the session itself stays in the engine's memory).
pub type SessionHandle = [u8; 16];

/// Marks the optional session handle after the step's fields.
const SESSION_MARK: u8 = 0xf1;

/// An opened State.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedState {
    pub step: Step,
    /// When the token expires.
    pub expires: SystemTime,
    /// The login's first-factor session, when it has one.
    pub session: Option<SessionHandle>,
}

/// A token just opened, as another store must remember it: spent until `keep_for` has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    pub nonce: [u8; NONCE_LEN],
    pub keep_for: Duration,
}

/// Why a State was refused. All map to the same Reject; the distinction is for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("State is malformed or was not sealed with this server's key")]
    Forged,
    #[error("State has expired")]
    Expired,
    #[error("State was already used")]
    Replayed,
    #[error("State belongs to another user or client")]
    WrongOwner,
    #[error("State would not fit a RADIUS attribute")]
    TooLong,
}

/// Problems loading the sealing key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("engine.state_key_file = {path}: cannot read the State key: {source}; create one with `openssl rand -hex 32 > {path}` (mode 0640, group vip-bridge), or remove the key to use a random key per process")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("engine.state_key_file = {path}: one State key per line, 64 hexadecimal characters (32 bytes) each, at most 8 (the first seals, all open: key rotation); create one with `openssl rand -hex 32 > {path}`")]
    Format { path: String },
}

/// A spent nonce outlives its token's expiry by this much (clock steps, slow rounds).
const SPENT_SLACK: Duration = Duration::from_secs(5);

/// Expires a spent nonce when its token would have expired (the value is the time left).
struct UntilTokenExpires;

impl moka::Expiry<[u8; NONCE_LEN], Duration> for UntilTokenExpires {
    fn expire_after_create(
        &self,
        _nonce: &[u8; NONCE_LEN],
        left: &Duration,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(*left)
    }
}

/// One State key: its id (the first octet of its SHA-256, so a token names its key without
/// saying anything about it) and its cipher.
struct SealKey {
    id: u8,
    cipher: XChaCha20Poly1305,
}

/// Seals and opens State tokens; remembers used ones.
pub struct StateSealer {
    /// The first seals; every one opens (key rotation: old States keep working until they
    /// expire).
    keys: Vec<SealKey>,
    /// Spent nonces, each kept until its token would have expired anyway (plus a little),
    /// so memory follows the live States, not the longest State any login could have.
    used: moka::sync::Cache<[u8; NONCE_LEN], Duration>,
}

impl StateSealer {
    /// A sealer with a fresh random key (single instance; States do not survive a restart).
    pub fn random(max_ttl: Duration) -> Self {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        Self::with_keys(&[key], max_ttl)
    }

    /// A sealer with the keys in `path`: one per line, 64 hex characters each (surrounding
    /// white space, empty lines and `#` comments ignored); the first seals, all open.
    pub fn from_key_file(path: &Path, max_ttl: Duration) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        // 64 hex characters and some white space: anything much longer is not a key file.
        let bytes = crate::files::read_at_most(path, 4096).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::Format {
            path: shown.clone(),
        })?;
        let mut keys = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut raw = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(line, raw.as_mut_slice()).map_err(|_| KeyError::Format {
                path: shown.clone(),
            })?;
            keys.push(*Key::from_slice(raw.as_slice()));
        }
        if keys.is_empty() || keys.len() > MAX_KEYS {
            return Err(KeyError::Format { path: shown });
        }
        let sealer = Self::with_keys(&keys, max_ttl);
        for k in keys.iter_mut() {
            zeroize::Zeroize::zeroize(k.as_mut_slice());
        }
        Ok(sealer)
    }

    fn with_keys(keys: &[Key], max_ttl: Duration) -> Self {
        StateSealer {
            keys: keys
                .iter()
                .map(|k| SealKey {
                    id: Sha256::digest(k.as_slice())[0],
                    cipher: XChaCha20Poly1305::new(k),
                })
                .collect(),
            used: moka::sync::Cache::builder()
                .expire_after(UntilTokenExpires)
                // Backstop only: no token lives longer than `max_ttl`.
                .time_to_live(max_ttl + SPENT_SLACK)
                .max_capacity(1_000_000)
                .build(),
        }
    }

    /// Seals `step` for `user` at `client`, valid for `ttl`.
    pub fn seal(
        &self,
        user: &str,
        client: &str,
        step: &Step,
        ttl: Duration,
    ) -> Result<Vec<u8>, StateError> {
        self.seal_with_session(user, client, step, ttl, None)
    }

    /// [`seal`](Self::seal), naming the login's first-factor session.
    pub fn seal_with_session(
        &self,
        user: &str,
        client: &str,
        step: &Step,
        ttl: Duration,
        session: Option<&SessionHandle>,
    ) -> Result<Vec<u8>, StateError> {
        let expires = SystemTime::now() + ttl;
        let mut plain = Zeroizing::new(Vec::with_capacity(96));
        plain.extend_from_slice(&unix_ms(expires).to_be_bytes());
        plain.extend_from_slice(&user_tag(user));
        plain.extend_from_slice(&client_tag(client));
        match step {
            Step::Menu => plain.push(0),
            Step::NextCode { first_code, pin } => {
                plain.push(1);
                push_field(&mut plain, first_code.expose())?;
                push_field(&mut plain, pin.as_ref().map(Secret::expose).unwrap_or(""))?;
            }
            Step::SentCode { voice } => {
                plain.push(2);
                plain.push(u8::from(*voice));
            }
            Step::Push {
                transaction_id,
                number,
            } => {
                plain.push(3);
                push_field(&mut plain, transaction_id)?;
                push_field(&mut plain, number.as_deref().unwrap_or(""))?;
            }
            Step::Upstream => plain.push(4),
            Step::Enroll(EnrollStep::Choose) => plain.push(5),
            Step::Enroll(EnrollStep::TokenId) => plain.push(6),
            Step::Enroll(EnrollStep::TokenCode { credential_id }) => {
                plain.push(7);
                push_field(&mut plain, credential_id)?;
            }
            Step::Enroll(EnrollStep::TokenNextCode {
                credential_id,
                first_code,
            }) => {
                plain.push(8);
                push_field(&mut plain, credential_id)?;
                push_field(&mut plain, first_code.expose())?;
            }
            Step::Enroll(EnrollStep::Phone { voice }) => {
                plain.push(9);
                plain.push(u8::from(*voice));
            }
            Step::Enroll(EnrollStep::PhoneCode { voice, phone }) => {
                plain.push(10);
                plain.push(u8::from(*voice));
                push_field(&mut plain, phone)?;
            }
            Step::ResetCode => plain.push(11),
            Step::NewPin => plain.push(12),
            Step::ConfirmPin { digest } => {
                plain.push(13);
                plain.extend_from_slice(digest);
            }
        }
        if let Some(handle) = session {
            plain.push(SESSION_MARK);
            plain.extend_from_slice(handle);
        }
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let key = self.keys.first().ok_or(StateError::TooLong)?;
        let header = [VERSION_KID, key.id];
        let sealed = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: &header,
                },
            )
            .map_err(|_| StateError::TooLong)?;
        let mut token = Vec::with_capacity(2 + NONCE_LEN + sealed.len());
        token.extend_from_slice(&header);
        token.extend_from_slice(&nonce);
        token.extend_from_slice(&sealed);
        // Printable (base64url, no padding): some NASes keep State as a C string (radcli in
        // ocserv cuts it at the first zero octet), so binary States came back truncated.
        let text = URL_SAFE_NO_PAD.encode(&token);
        if text.len() > MAX_TOKEN_LEN {
            return Err(StateError::TooLong);
        }
        Ok(text.into_bytes())
    }

    /// Opens `token` for `user` at `client` and marks it used: a second `open` of the same token
    /// fails with [`StateError::Replayed`].
    pub fn open(&self, token: &[u8], user: &str, client: &str) -> Result<OpenedState, StateError> {
        self.open_spending(token, user, client)
            .map(|(state, _)| state)
    }

    /// [`open`](Self::open), also giving what marks the token spent elsewhere (the shared
    /// store of several instances): its nonce and how long it must stay spent.
    pub fn open_spending(
        &self,
        token: &[u8],
        user: &str,
        client: &str,
    ) -> Result<(OpenedState, Spent), StateError> {
        let (nonce, opened) = self.decrypt(token)?;
        if opened.user_tag != user_tag(user) || opened.client_tag != client_tag(client) {
            return Err(StateError::WrongOwner);
        }
        // Single use: the first opener wins, atomically. The nonce is remembered for as long
        // as the token could still be presented.
        let remaining = opened
            .state
            .expires
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            + SPENT_SLACK;
        let entry = self.used.entry(nonce).or_insert(remaining);
        if !entry.is_fresh() {
            return Err(StateError::Replayed);
        }
        Ok((
            opened.state,
            Spent {
                nonce,
                keep_for: remaining,
            },
        ))
    }

    /// Whether `token` is a live, unused token of ours, without consuming it.
    pub fn is_live(&self, token: &[u8]) -> bool {
        match self.decrypt(token) {
            Ok((nonce, _)) => !self.used.contains_key(&nonce),
            Err(_) => false,
        }
    }

    fn decrypt(&self, token: &[u8]) -> Result<([u8; NONCE_LEN], Decoded), StateError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(StateError::Forged);
        }
        // Tokens are base64url text; binary ones (issued before, up to `state_ttl` ago)
        // start with the version octet, which is not a base64url character.
        let binary;
        let token = if matches!(token.first(), Some(&VERSION) | Some(&VERSION_KID)) {
            token
        } else {
            binary = Zeroizing::new(
                URL_SAFE_NO_PAD
                    .decode(token)
                    .map_err(|_| StateError::Forged)?,
            );
            &binary[..]
        };
        // The header is the AAD: the version, and the key id when there is one.
        let (header, kid) = match token {
            [VERSION, ..] => (&token[..1], None),
            [VERSION_KID, id, ..] => (&token[..2], Some(*id)),
            _ => return Err(StateError::Forged),
        };
        let rest = &token[header.len()..];
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(StateError::Forged);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&rest[..NONCE_LEN]);
        let plain = self
            .keys
            .iter()
            .filter(|k| kid.is_none_or(|id| id == k.id))
            .find_map(|k| {
                k.cipher
                    .decrypt(
                        XNonce::from_slice(&nonce),
                        Payload {
                            msg: &rest[NONCE_LEN..],
                            aad: header,
                        },
                    )
                    .ok()
            })
            .map(Zeroizing::new)
            .ok_or(StateError::Forged)?;
        let decoded = decode(&plain).ok_or(StateError::Forged)?;
        if decoded.state.expires <= SystemTime::now() {
            return Err(StateError::Expired);
        }
        Ok((nonce, decoded))
    }
}

struct Decoded {
    state: OpenedState,
    user_tag: [u8; 16],
    client_tag: [u8; 8],
}

fn decode(plain: &[u8]) -> Option<Decoded> {
    let mut r = Reader(plain);
    let expires_ms = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
    let user_tag: [u8; 16] = r.take(16)?.try_into().ok()?;
    let client_tag: [u8; 8] = r.take(8)?.try_into().ok()?;
    let step = match r.take(1)?[0] {
        0 => Step::Menu,
        1 => {
            let first_code = Secret::new(r.field()?);
            let pin = r.field()?;
            Step::NextCode {
                first_code,
                pin: (!pin.is_empty()).then(|| Secret::new(pin)),
            }
        }
        2 => Step::SentCode {
            voice: r.take(1)?[0] != 0,
        },
        3 => {
            let transaction_id = r.field()?;
            let number = r.field()?;
            Step::Push {
                transaction_id,
                number: (!number.is_empty()).then_some(number),
            }
        }
        4 => Step::Upstream,
        5 => Step::Enroll(EnrollStep::Choose),
        6 => Step::Enroll(EnrollStep::TokenId),
        7 => Step::Enroll(EnrollStep::TokenCode {
            credential_id: r.field()?,
        }),
        8 => {
            let credential_id = r.field()?;
            let first_code = Secret::new(r.field()?);
            Step::Enroll(EnrollStep::TokenNextCode {
                credential_id,
                first_code,
            })
        }
        9 => Step::Enroll(EnrollStep::Phone {
            voice: r.take(1)?[0] != 0,
        }),
        10 => {
            let voice = r.take(1)?[0] != 0;
            Step::Enroll(EnrollStep::PhoneCode {
                voice,
                phone: r.field()?,
            })
        }
        11 => Step::ResetCode,
        12 => Step::NewPin,
        13 => Step::ConfirmPin {
            digest: r.take(16)?.try_into().ok()?,
        },
        _ => return None,
    };
    let session = match r.take(1) {
        None => None,
        Some([SESSION_MARK]) => Some(r.take(16)?.try_into().ok()?),
        Some(_) => return None,
    };
    if !r.0.is_empty() {
        return None;
    }
    Some(Decoded {
        state: OpenedState {
            step,
            expires: UNIX_EPOCH + Duration::from_millis(expires_ms),
            session,
        },
        user_tag,
        client_tag,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn field(&mut self) -> Option<String> {
        let len = usize::from(self.take(1)?[0]);
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

fn push_field(buf: &mut Vec<u8>, s: &str) -> Result<(), StateError> {
    let len = u8::try_from(s.len()).map_err(|_| StateError::TooLong)?;
    buf.push(len);
    buf.extend_from_slice(s.as_bytes());
    Ok(())
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn user_tag(user: &str) -> [u8; 16] {
    let digest = Sha256::digest(user.to_lowercase().as_bytes());
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&digest[..16]);
    tag
}

fn client_tag(client: &str) -> [u8; 8] {
    let digest = Sha256::digest(client.as_bytes());
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&digest[..8]);
    tag
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn sealer() -> StateSealer {
        StateSealer::random(TTL)
    }

    #[test]
    fn round_trip_every_step() {
        let s = sealer();
        let steps = [
            Step::Menu,
            Step::NextCode {
                first_code: Secret::new("123456"),
                pin: Some(Secret::new("9999")),
            },
            Step::NextCode {
                first_code: Secret::new("654321"),
                pin: None,
            },
            Step::SentCode { voice: true },
            Step::Push {
                transaction_id: "0123456789abcdef".into(),
                number: Some("42".into()),
            },
            Step::Push {
                transaction_id: "fedcba9876543210".into(),
                number: None,
            },
            Step::Upstream,
            Step::Enroll(EnrollStep::Choose),
            Step::Enroll(EnrollStep::TokenId),
            Step::Enroll(EnrollStep::TokenCode {
                credential_id: "VSST12345678".into(),
            }),
            Step::Enroll(EnrollStep::TokenNextCode {
                credential_id: "VSST12345678".into(),
                first_code: Secret::new("123456"),
            }),
            Step::Enroll(EnrollStep::Phone { voice: true }),
            Step::Enroll(EnrollStep::PhoneCode {
                voice: false,
                phone: "15551234567".into(),
            }),
            Step::ResetCode,
            Step::NewPin,
            Step::ConfirmPin { digest: [9; 16] },
        ];
        for step in steps {
            let t = s.seal("Alice", "radius/vpn", &step, TTL).unwrap();
            assert!(t.len() <= MAX_TOKEN_LEN);
            assert!(s.is_live(&t));
            // User look-ups are case-insensitive, like VIP's.
            let opened = s.open(&t, "alice", "radius/vpn").unwrap();
            assert_eq!(opened.step, step);
            assert_eq!(opened.session, None);
            assert!(!s.is_live(&t), "an opened State is no longer live");
        }
    }

    #[test]
    fn a_first_factor_session_rides_along_and_fits() {
        let s = sealer();
        let handle: SessionHandle = [7; 16];
        // The longest step a first-factor login seals: a push with VIP's transaction id (up
        // to 64 characters here, longer than VIP's 32) and a number.
        let push = Step::Push {
            transaction_id: "t".repeat(64),
            number: Some("99".into()),
        };
        for step in [
            Step::Menu,
            Step::Upstream,
            Step::SentCode { voice: false },
            push,
            // The longest enrollment steps: a credential ID as long as the prompt accepts
            // (32) with a 10-character code, and a phone number with an extension.
            Step::Enroll(EnrollStep::TokenNextCode {
                credential_id: "C".repeat(32),
                first_code: Secret::new("1234567890"),
            }),
            Step::Enroll(EnrollStep::PhoneCode {
                voice: true,
                phone: format!("{}x{}", "1".repeat(20), "2".repeat(20)),
            }),
            Step::ConfirmPin { digest: [1; 16] },
        ] {
            let t = s
                .seal_with_session("alice", "radius/vpn", &step, TTL, Some(&handle))
                .unwrap();
            assert!(t.len() <= MAX_TOKEN_LEN, "{} octets", t.len());
            let opened = s.open(&t, "alice", "radius/vpn").unwrap();
            assert_eq!((opened.step, opened.session), (step, Some(handle)));
        }
    }

    #[test]
    fn replay_is_refused() {
        let s = sealer();
        let t = s.seal("alice", "c", &Step::Menu, TTL).unwrap();
        s.open(&t, "alice", "c").unwrap();
        assert_eq!(s.open(&t, "alice", "c"), Err(StateError::Replayed));
    }

    #[test]
    fn a_spent_nonce_is_kept_as_long_as_its_token_not_the_longest_token() {
        // The sealer accepts tokens of up to 11 minutes (pushes); a 30 s menu State's nonce
        // must not be held for 11 minutes (a soak saw memory grow for exactly that long).
        let s = StateSealer::random(Duration::from_secs(660));
        let t = s
            .seal("alice", "c", &Step::Menu, Duration::from_secs(30))
            .unwrap();
        s.open(&t, "alice", "c").unwrap();
        s.used.run_pending_tasks();
        let kept: Vec<Duration> = s.used.iter().map(|(_, left)| left).collect();
        assert_eq!(kept.len(), 1);
        assert!(
            kept[0] <= Duration::from_secs(30) + SPENT_SLACK && kept[0] >= Duration::from_secs(28),
            "{kept:?}"
        );
    }

    #[test]
    fn other_user_or_client_is_refused() {
        let s = sealer();
        let t = s.seal("alice", "radius/vpn", &Step::Menu, TTL).unwrap();
        assert_eq!(s.open(&t, "bob", "radius/vpn"), Err(StateError::WrongOwner));
        assert_eq!(s.open(&t, "alice", "pam/sshd"), Err(StateError::WrongOwner));
        // A refused attempt does not burn the token for its owner.
        assert!(s.open(&t, "alice", "radius/vpn").is_ok());
    }

    #[test]
    fn expired_is_refused() {
        let s = sealer();
        let t = s
            .seal("alice", "c", &Step::Menu, Duration::from_millis(1))
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.open(&t, "alice", "c"), Err(StateError::Expired));
        assert!(!s.is_live(&t));
    }

    #[test]
    fn forged_tampered_and_foreign_key_are_refused() {
        let s = sealer();
        let t = s.seal("alice", "c", &Step::Menu, TTL).unwrap();
        for i in [0, 1, 30, t.len() - 1] {
            let mut bad = t.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                s.open(&bad, "alice", "c"),
                Err(StateError::Forged),
                "byte {i}"
            );
        }
        assert_eq!(
            s.open(&t[..t.len() - 1], "alice", "c"),
            Err(StateError::Forged)
        );
        assert_eq!(s.open(b"", "alice", "c"), Err(StateError::Forged));
        assert_eq!(s.open(&[1u8; 300], "alice", "c"), Err(StateError::Forged));
        let other = sealer();
        assert_eq!(other.open(&t, "alice", "c"), Err(StateError::Forged));
    }

    #[test]
    fn key_file_shares_states_between_instances() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.key");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        let a = StateSealer::from_key_file(&path, TTL).unwrap();
        let b = StateSealer::from_key_file(&path, TTL).unwrap();
        let t = a
            .seal("alice", "c", &Step::SentCode { voice: false }, TTL)
            .unwrap();
        assert_eq!(
            b.open(&t, "alice", "c").unwrap().step,
            Step::SentCode { voice: false }
        );
    }

    #[test]
    fn a_rotated_key_file_opens_the_old_keys_states_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            StateSealer::from_key_file(&p, TTL).unwrap()
        };
        let (old, new) = ("ab".repeat(32), "cd".repeat(32));
        let before = write("old.key", &format!("{old}\n"));
        // Step 1 of a rotation: the new key on the second line everywhere (opens, not seals).
        let during = write(
            "both.key",
            &format!("# rotated 2026-11-30\n{new}\n\n{old}\n"),
        );
        let after = write("new.key", &format!("{new}\n"));
        let from_old = before.seal("alice", "c", &Step::Menu, TTL).unwrap();
        let from_new = during.seal("alice", "c", &Step::Menu, TTL).unwrap();
        assert_eq!(
            during.open(&from_old, "alice", "c").unwrap().step,
            Step::Menu
        );
        assert_eq!(
            after.open(&from_new, "alice", "c").unwrap().step,
            Step::Menu
        );
        // A key that is gone opens nothing it sealed.
        let again = before.seal("alice", "c", &Step::Menu, TTL).unwrap();
        assert_eq!(after.open(&again, "alice", "c"), Err(StateError::Forged));
        // Tokens without a key id (version 1) still open with any of the keys.
        let key = &during.keys[1];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut plain = Vec::new();
        plain.extend_from_slice(&unix_ms(SystemTime::now() + TTL).to_be_bytes());
        plain.extend_from_slice(&user_tag("alice"));
        plain.extend_from_slice(&client_tag("c"));
        plain.push(0);
        let sealed = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: &[VERSION],
                },
            )
            .unwrap();
        let mut v1 = vec![VERSION];
        v1.extend_from_slice(&nonce);
        v1.extend_from_slice(&sealed);
        let v1 = URL_SAFE_NO_PAD.encode(&v1).into_bytes();
        assert_eq!(during.open(&v1, "alice", "c").unwrap().step, Step::Menu);
        // At most 8 keys; at least one.
        let nine = format!("{old}\n").repeat(9);
        std::fs::write(dir.path().join("nine.key"), nine).unwrap();
        assert!(StateSealer::from_key_file(&dir.path().join("nine.key"), TTL).is_err());
        std::fs::write(dir.path().join("none.key"), "# nothing\n").unwrap();
        assert!(StateSealer::from_key_file(&dir.path().join("none.key"), TTL).is_err());
    }

    #[test]
    fn bad_key_file_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.key");
        std::fs::write(&path, "not hex").unwrap();
        let err = StateSealer::from_key_file(&path, TTL)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("64 hexadecimal") && err.contains("openssl rand -hex 32"),
            "{err}"
        );
        let err = StateSealer::from_key_file(&dir.path().join("missing"), TTL)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("missing") && err.contains("cannot read"),
            "{err}"
        );
    }

    #[test]
    fn debug_never_shows_codes() {
        let step = Step::NextCode {
            first_code: Secret::new("123456"),
            pin: None,
        };
        assert!(!format!("{step:?}").contains("123456"));
        let step = Step::Enroll(EnrollStep::TokenNextCode {
            credential_id: "VSST12345678".into(),
            first_code: Secret::new("123456"),
        });
        assert_eq!(format!("{step:?}"), "EnrollTokenNextCode");
        let step = Step::Enroll(EnrollStep::PhoneCode {
            voice: false,
            phone: "15551234567".into(),
        });
        assert!(!format!("{step:?}").contains("1555"));
    }

    #[test]
    fn states_are_printable_and_never_hold_a_zero_octet() {
        let sealer = StateSealer::random(Duration::from_secs(600));
        let steps = [
            Step::Menu,
            Step::SentCode { voice: true },
            Step::NextCode {
                first_code: Secret::new("123456"),
                pin: Some(Secret::new("4321")),
            },
            Step::Push {
                transaction_id: "d8b0b1d6a3c24a1b".into(),
                number: Some("42".into()),
            },
        ];
        for i in 0..200 {
            let step = &steps[i % steps.len()];
            let token = sealer
                .seal("alice", "radius:vpn", step, Duration::from_secs(60))
                .unwrap();
            assert!(token.len() <= MAX_TOKEN_LEN);
            assert!(
                token
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'),
                "{token:?}"
            );
            // What radcli does to a State: keep it up to the first zero octet. Nothing lost.
            let cut: Vec<u8> = token.iter().copied().take_while(|b| *b != 0).collect();
            assert_eq!(cut, token);
            assert!(sealer.open(&cut, "alice", "radius:vpn").is_ok());
        }
    }

    #[test]
    fn binary_states_issued_before_still_open_until_they_expire() {
        let sealer = StateSealer::random(Duration::from_secs(600));
        let text = sealer
            .seal("alice", "radius:vpn", &Step::Menu, Duration::from_secs(60))
            .unwrap();
        // The binary form is what seal() returned before States were printable.
        let binary = URL_SAFE_NO_PAD.decode(&text).unwrap();
        assert_eq!(binary[0], VERSION_KID);
        assert!(sealer.is_live(&binary));
        assert!(sealer.open(&binary, "alice", "radius:vpn").is_ok());
        // One token, two spellings: still single use.
        assert!(matches!(
            sealer.open(&text, "alice", "radius:vpn"),
            Err(StateError::Replayed)
        ));
        // Not base64url and not binary: forged.
        assert!(matches!(
            sealer.open(b"not base64!", "alice", "radius:vpn"),
            Err(StateError::Forged)
        ));
    }
}
