//! A VIP User Services response body, through the parser of one operation: the XML reader
//! (namespaces, depth limit, DOCTYPE refusal), the SOAP envelope/Fault checks, the
//! requestId/status checks and each operation's typed fields. Errors are formatted too, as the
//! daemon logs them.
//!
//! Input: one selector byte (which operation, modulo 7; see `OPS`), then the HTTP body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vip_core::vip::wire::*;
use vip_core::vip::VipError;

/// The requestId the parsers expect (the golden responses carry it).
const RID: &str = "REQ_0001";
/// The transactions a poll "asked about" (those of the golden poll response).
const SENT_IDS: [&str; 4] = [
    "aaaa000000000001",
    "aaaa000000000002",
    "aaaa000000000003",
    "aaaa000000000004",
];
/// "Now" for getServerTime's skew (2024-02-29T12:00:00Z).
const NOW_UNIX: i64 = 1_709_208_000;

/// Selector byte (mod 7) -> operation. Keep in step with fuzz/seeds.py.
const OPS: [&str; 7] = [
    "authenticateUser",
    "checkOtp",
    "authenticateUserWithPush",
    "pollPushStatus",
    "getUserInfo",
    "sendOtp",
    "getServerTime",
];

fn report(e: &VipError) {
    let _ = e.to_string();
    let _ = format!("{e:?}");
    let _ = (e.status(), e.class(), e.request_id(), e.is_unreachable());
}

fn show<T: std::fmt::Debug>(r: Result<T, VipError>) {
    match r {
        Ok(v) => {
            let _ = format!("{v:?}");
        }
        Err(e) => report(&e),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match usize::from(selector) % OPS.len() {
        0 => show(parse_authenticate_user(body, RID)),
        1 => show(parse_check_otp(body, RID)),
        2 => match parse_authenticate_user_with_push(body, RID) {
            Ok(r) => {
                let _ = r.reached_a_device();
                let _ = format!("{r:?}");
            }
            Err(e) => report(&e),
        },
        3 => match parse_poll_push_status(body, RID, &SENT_IDS) {
            Ok(statuses) => {
                for s in &statuses {
                    let _ = s.status.is_pending();
                }
                let _ = format!("{statuses:?}");
            }
            Err(e) => report(&e),
        },
        4 => match parse_get_user_info(body, RID) {
            Ok(info) => {
                for c in &info.credentials {
                    let _ = (c.is_enabled(), c.is_push_capable());
                }
                let _ = format!("{info:?}");
            }
            Err(e) => report(&e),
        },
        5 => show(parse_send_otp(body, RID)),
        _ => show(parse_get_server_time(body, RID, NOW_UNIX)),
    }
});
