//! `StateSealer` (shared/src/challenge.rs) with a fixed key, opening what a NAS or PAM client
//! sends back as State: `is_live` (the RADIUS server's admission check) and `open` (the
//! engine's), including single use.
//!
//! Random tokens never get past the AEAD, so the target also seals plaintexts itself with
//! the same key and the key-id-less token layout the sealer still opens (version 1 || nonce ||
//! XChaCha20-Poly1305(plain, aad = version)) to reach the plaintext decoder behind it. Input: one selector byte (mod 4), then:
//!
//! - 0: a token, as received;
//! - 1: a plaintext, sealed as is (any expiry, any owner tags);
//! - 2: the step part of a plaintext (step byte and fields), sealed with a live expiry and
//!   the right owner tags, so only the step decoding decides;
//! - 3: a `Step` built from the bytes, through `seal` then `open` (round trip).

#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use vip_core::challenge::{EnrollStep, StateError, StateSealer, Step, MAX_TOKEN_LEN};
use vip_core::secret::Secret;

/// The fixed sealing key: octets 0x00..=0x1f (fuzz/seeds.py seals the seed tokens with it).
const KEY: [u8; 32] = {
    let mut k = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        k[i] = i as u8;
        i += 1;
    }
    k
};
const USER: &str = "alice";
const CLIENT: &str = "radius/vpn";
/// Short, so the used-nonce cache does not grow over a long campaign.
const MAX_TTL: Duration = Duration::from_secs(1);

struct Fixture {
    sealer: StateSealer,
    cipher: XChaCha20Poly1305,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // The only way to give a sealer a known key is a key file.
        let path = std::env::temp_dir().join(format!("vip-fuzz-state-{}.key", std::process::id()));
        let hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&path, hex).expect("write the key file");
        let sealer = StateSealer::from_key_file(&path, MAX_TTL).expect("load the key file");
        let _ = std::fs::remove_file(&path);
        Fixture {
            sealer,
            cipher: XChaCha20Poly1305::new(Key::from_slice(&KEY)),
        }
    })
}

/// A fresh nonce per call, so tokens sealed here are never replays of each other.
fn nonce() -> [u8; 24] {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut n = [0xa5u8; 24];
    n[..8].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    n
}

fn seal_raw(cipher: &XChaCha20Poly1305, plain: &[u8]) -> Vec<u8> {
    let nonce = nonce();
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &[1],
            },
        )
        .expect("XChaCha20-Poly1305 seals any length we give it");
    let mut token = vec![1u8];
    token.extend_from_slice(&nonce);
    token.extend_from_slice(&sealed);
    token
}

fn user_tag(user: &str) -> [u8; 16] {
    let mut t = [0u8; 16];
    t.copy_from_slice(&Sha256::digest(user.to_lowercase().as_bytes())[..16]);
    t
}

fn client_tag(client: &str) -> [u8; 8] {
    let mut t = [0u8; 8];
    t.copy_from_slice(&Sha256::digest(client.as_bytes())[..8]);
    t
}

/// Opens a token that just opened once more: it must be refused as a replay, and no longer
/// be live.
fn assert_single_use(sealer: &StateSealer, token: &[u8]) {
    assert_eq!(sealer.open(token, USER, CLIENT), Err(StateError::Replayed));
    assert!(!sealer.is_live(token));
}

/// `open` for USER/CLIENT, with the is_live check the RADIUS server makes first.
fn open(sealer: &StateSealer, token: &[u8]) -> Result<Step, StateError> {
    let live = sealer.is_live(token);
    let r = sealer.open(token, USER, CLIENT);
    if r.is_ok() {
        assert!(live, "a token that opens was live");
        assert!(token.len() <= MAX_TOKEN_LEN);
        assert_single_use(sealer, token);
    }
    r.map(|o| {
        let _ = format!("{o:?}");
        o.step
    })
}

/// Splits `rest` into a string field: one length octet, then up to that many octets (lossy
/// UTF-8), so the fuzzer controls both the content and the size.
fn field(rest: &mut &[u8]) -> String {
    let Some((&len, tail)) = rest.split_first() else {
        return String::new();
    };
    let n = usize::from(len).min(tail.len());
    let (head, tail) = tail.split_at(n);
    *rest = tail;
    String::from_utf8_lossy(head).into_owned()
}

fn step_from(bytes: &[u8]) -> Option<Step> {
    let (&kind, mut rest) = bytes.split_first()?;
    Some(match kind % 8 {
        0 => Step::Menu,
        1 => {
            let first_code = Secret::new(field(&mut rest));
            let pin = field(&mut rest);
            Step::NextCode {
                first_code,
                pin: (!pin.is_empty()).then(|| Secret::new(pin)),
            }
        }
        2 => Step::SentCode {
            voice: rest.first().is_some_and(|b| b & 1 == 1),
        },
        4 => Step::Enroll(EnrollStep::TokenNextCode {
            credential_id: field(&mut rest),
            first_code: Secret::new(field(&mut rest)),
        }),
        5 => {
            let voice = rest.first().is_some_and(|b| b & 1 == 1);
            Step::Enroll(EnrollStep::PhoneCode {
                voice,
                phone: field(&mut rest),
            })
        }
        6 => {
            let mut digest = [0u8; 16];
            for (d, b) in digest.iter_mut().zip(rest.iter()) {
                *d = *b;
            }
            Step::ConfirmPin { digest }
        }
        _ => {
            let transaction_id = field(&mut rest);
            let number = field(&mut rest);
            Step::Push {
                transaction_id,
                number: (!number.is_empty()).then_some(number),
            }
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    match selector % 4 {
        0 => {
            let _ = open(&f.sealer, rest);
        }
        1 => {
            let token = seal_raw(&f.cipher, rest);
            let _ = open(&f.sealer, &token);
        }
        2 => {
            let expires = SystemTime::now() + Duration::from_secs(3600);
            let ms = expires
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_millis() as u64;
            let mut plain = ms.to_be_bytes().to_vec();
            plain.extend_from_slice(&user_tag(USER));
            plain.extend_from_slice(&client_tag(CLIENT));
            plain.extend_from_slice(rest);
            let token = seal_raw(&f.cipher, &plain);
            match open(&f.sealer, &token) {
                // Live, ours, never used: only a malformed step (or a token too long for
                // one RADIUS attribute) may be refused.
                Ok(step) => {
                    // What opened must seal again and open to the same step.
                    if let Ok(again) = f.sealer.seal(USER, CLIENT, &step, Duration::from_secs(60)) {
                        assert_eq!(open(&f.sealer, &again), Ok(step));
                    }
                }
                Err(StateError::Forged) => {}
                Err(e) => panic!("a live token of ours for {USER} was refused: {e}"),
            }
        }
        _ => {
            let Some(step) = step_from(rest) else {
                return;
            };
            match f.sealer.seal(USER, CLIENT, &step, Duration::from_secs(60)) {
                Ok(token) => {
                    assert!(token.len() <= MAX_TOKEN_LEN);
                    // Another user or client may not use it (and that does not burn it).
                    assert!(matches!(
                        f.sealer.open(&token, "mallory", CLIENT),
                        Err(StateError::WrongOwner)
                    ));
                    assert_eq!(open(&f.sealer, &token), Ok(step));
                }
                Err(e) => assert_eq!(e, StateError::TooLong),
            }
        }
    }
});
