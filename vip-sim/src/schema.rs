//! The XSD structure of the request elements: every child in sequence order, with its
//! cardinality, in the VIP namespace and known. VIP validates requests against its schema and
//! answers 600B for any violation, so a client that reorders, repeats or invents elements must
//! fail here as it would there.

use crate::ops::Op;
use crate::xml::{is_xml_space, Elem, VIP_NS};

/// What an element may contain.
#[derive(Clone, Copy)]
enum Content {
    /// Character data only (a simple type).
    Text,
    /// A sequence of child elements (white space between them allowed, no other text).
    Seq(&'static [Part]),
    /// Not checked: content the simulator does not model (gatewayAcctInfo).
    Any,
}

/// One particle of a sequence: `name` between `min` and `max` times.
struct Part {
    name: &'static str,
    min: u32,
    max: u32,
    content: Content,
}

const UNBOUNDED: u32 = u32::MAX;

const fn leaf(name: &'static str, min: u32, max: u32) -> Part {
    Part {
        name,
        min,
        max,
        content: Content::Text,
    }
}

const KEY_VALUE: &[Part] = &[leaf("Key", 1, 1), leaf("Value", 0, 1)];

const AUTH_CONTEXT_FIELDS: &[Part] = &[Part {
    name: "params",
    min: 0,
    max: UNBOUNDED,
    content: Content::Seq(KEY_VALUE),
}];

const AUTH_CONTEXT: Part = Part {
    name: "authContext",
    min: 0,
    max: 1,
    content: Content::Seq(AUTH_CONTEXT_FIELDS),
};

const OTP_FIELDS: &[Part] = &[leaf("otp", 1, 1), leaf("otp2", 0, 1)];

const PUSH_FIELDS: &[Part] = &[
    Part {
        name: "displayParameters",
        min: 0,
        max: UNBOUNDED,
        content: Content::Seq(KEY_VALUE),
    },
    Part {
        name: "requestParameters",
        min: 0,
        max: UNBOUNDED,
        content: Content::Seq(KEY_VALUE),
    },
];

const SMS_FIELDS: &[Part] = &[
    leaf("phoneNumber", 1, 1),
    leaf("smsFrom", 0, 1),
    leaf("messageTemplate", 0, 1),
    Part {
        name: "gatewayAcctInfo",
        min: 0,
        max: 1,
        content: Content::Any,
    },
];

const VOICE_FIELDS: &[Part] = &[leaf("phoneNumber", 1, 1), leaf("Language", 0, 1)];

const AUTHENTICATE_USER: &[Part] = &[
    leaf("requestId", 1, 1),
    leaf("onBehalfOfAccountId", 0, 1),
    leaf("userId", 1, 1),
    leaf("pin", 0, 1),
    Part {
        name: "otpAuthData",
        min: 0,
        max: 1,
        content: Content::Seq(OTP_FIELDS),
    },
    AUTH_CONTEXT,
];

const CHECK_OTP: &[Part] = &[
    leaf("requestId", 1, 1),
    leaf("onBehalfOfAccountId", 0, 1),
    leaf("userId", 1, 1),
    Part {
        name: "otpAuthData",
        min: 1,
        max: 1,
        content: Content::Seq(OTP_FIELDS),
    },
    AUTH_CONTEXT,
];

const PUSH: &[Part] = &[
    leaf("requestId", 1, 1),
    leaf("onBehalfOfAccountId", 0, 1),
    leaf("userId", 1, 1),
    leaf("pin", 0, 1),
    Part {
        name: "pushAuthData",
        min: 1,
        max: 1,
        content: Content::Seq(PUSH_FIELDS),
    },
    AUTH_CONTEXT,
];

const POLL: &[Part] = &[
    leaf("requestId", 1, 1),
    leaf("onBehalfOfAccountId", 0, 1),
    leaf("transactionId", 1, 20),
];

const GET_USER_INFO: &[Part] = &[
    leaf("requestId", 1, 1),
    leaf("onBehalfOfAccountId", 0, 1),
    leaf("userId", 1, 1),
    leaf("iaInfo", 0, 1),
    leaf("includePushAttributes", 0, 1),
    leaf("includeTokenInfo", 0, 1),
];

// The XSD has a choice (smsDeliveryInfo | voiceDeliveryInfo)?; as a sequence of two optional
// elements it accepts both in that order, which `ops::validate` refuses separately.
const SEND_OTP: &[Part] = &[
    leaf("requestId", 1, 1),
    leaf("onBehalfOfAccountId", 0, 1),
    leaf("userId", 1, 1),
    Part {
        name: "smsDeliveryInfo",
        min: 0,
        max: 1,
        content: Content::Seq(SMS_FIELDS),
    },
    Part {
        name: "voiceDeliveryInfo",
        min: 0,
        max: 1,
        content: Content::Seq(VOICE_FIELDS),
    },
];

const GET_SERVER_TIME: &[Part] = &[leaf("requestId", 1, 1), leaf("onBehalfOfAccountId", 0, 1)];

// The Management and Query requests below follow VIP's XSD as its soap4r mapping records it
// (element order and occurs), plus the later optional elements seed 000's wrapper sends
// (forcePinChange, trustedDevice, includePushAttributes), each in the position it is listed.

const USER_ONLY: &[Part] = &[
    leaf("requestId", 1, 1),
    leaf("onBehalfOfAccountId", 0, 1),
    leaf("userId", 1, 1),
];

const CREATE_USER: &[Part] = &[
    leaf("requestId", 1, 1),
    leaf("onBehalfOfAccountId", 0, 1),
    leaf("userId", 1, 1),
    leaf("pin", 0, 1),
    leaf("forcePinChange", 0, 1),
];

const UPDATE_USER: &[Part] = &[
    leaf("requestId", 1, 1),
    leaf("onBehalfOfAccountId", 0, 1),
    leaf("userId", 1, 1),
    leaf("newUserId", 0, 1),
    leaf("newUserStatus", 0, 1),
    leaf("oldPin", 0, 1),
    leaf("newPin", 0, 1),
    leaf("forcePinChange", 0, 1),
];

const CREDENTIAL_DETAIL_FIELDS: &[Part] = &[
    leaf("credentialId", 1, 1),
    leaf("credentialType", 1, 1),
    leaf("friendlyName", 0, 1),
    leaf("trustedDevice", 0, 1),
];

const ADD_CREDENTIAL: &[Part] = &[
    leaf("requestId", 1, 1),
    leaf("onBehalfOfAccountId", 0, 1),
    leaf("userId", 1, 1),
    Part {
        name: "credentialDetail",
        min: 1,
        max: 1,
        content: Content::Seq(CREDENTIAL_DETAIL_FIELDS),
    },
    Part {
        name: "otpAuthData",
        min: 0,
        max: 1,
        content: Content::Seq(OTP_FIELDS),
    },
];

const REMOVE_CREDENTIAL: &[Part] = &[
    leaf("requestId", 1, 1),
    leaf("onBehalfOfAccountId", 0, 1),
    leaf("userId", 1, 1),
    leaf("credentialId", 1, 1),
    leaf("credentialType", 1, 1),
    leaf("trustedDevice", 0, 1),
];

const UPDATE_CREDENTIAL: &[Part] = &[
    leaf("requestId", 1, 1),
    leaf("onBehalfOfAccountId", 0, 1),
    leaf("userId", 1, 1),
    leaf("credentialId", 1, 1),
    leaf("credentialType", 1, 1),
    leaf("friendlyName", 1, 1),
];

// The XSD's choice (sms | voice | serviceOtp), exactly one: `mgmt::validate` counts them.
const REGISTER: &[Part] = &[
    leaf("requestId", 1, 1),
    leaf("onBehalfOfAccountId", 0, 1),
    Part {
        name: "smsDeliveryInfo",
        min: 0,
        max: 1,
        content: Content::Seq(SMS_FIELDS),
    },
    Part {
        name: "voiceDeliveryInfo",
        min: 0,
        max: 1,
        content: Content::Seq(VOICE_FIELDS),
    },
    Part {
        name: "serviceOtpDeliveryInfo",
        min: 0,
        max: 1,
        content: Content::Any,
    },
];

const TEMP_ATTRS_FIELDS: &[Part] = &[leaf("expirationTime", 0, 1), leaf("oneTimeUseOnly", 0, 1)];

const SET_TEMP: &[Part] = &[
    leaf("requestId", 1, 1),
    leaf("onBehalfOfAccountId", 0, 1),
    leaf("userId", 1, 1),
    leaf("temporaryPassword", 0, 1),
    Part {
        name: "temporaryPasswordAttributes",
        min: 0,
        max: 1,
        content: Content::Seq(TEMP_ATTRS_FIELDS),
    },
    Part {
        name: "smsDeliveryInfo",
        min: 0,
        max: 1,
        content: Content::Seq(SMS_FIELDS),
    },
    Part {
        name: "voiceDeliveryInfo",
        min: 0,
        max: 1,
        content: Content::Seq(VOICE_FIELDS),
    },
];

const SET_TEMP_ATTRS: &[Part] = &[
    leaf("requestId", 1, 1),
    leaf("onBehalfOfAccountId", 0, 1),
    leaf("userId", 1, 1),
    Part {
        name: "temporaryPasswordAttributes",
        min: 1,
        max: 1,
        content: Content::Seq(TEMP_ATTRS_FIELDS),
    },
];

const GET_CREDENTIAL_INFO: &[Part] = &[
    leaf("requestId", 1, 1),
    leaf("onBehalfOfAccountId", 0, 1),
    leaf("credentialId", 1, 1),
    leaf("credentialType", 1, 1),
    leaf("includePushAttributes", 0, 1),
];

fn request_fields(op: Op) -> &'static [Part] {
    match op {
        Op::AuthenticateUser => AUTHENTICATE_USER,
        Op::CheckOtp => CHECK_OTP,
        Op::AuthenticateUserWithPush => PUSH,
        Op::PollPushStatus => POLL,
        Op::GetUserInfo => GET_USER_INFO,
        Op::SendOtp => SEND_OTP,
        Op::GetServerTime => GET_SERVER_TIME,
        Op::CreateUser => CREATE_USER,
        Op::UpdateUser => UPDATE_USER,
        Op::DeleteUser
        | Op::ClearTemporaryPassword
        | Op::ClearUserPin
        | Op::GetTemporaryPasswordAttributes => USER_ONLY,
        Op::AddCredential => ADD_CREDENTIAL,
        Op::RemoveCredential => REMOVE_CREDENTIAL,
        Op::UpdateCredential => UPDATE_CREDENTIAL,
        Op::Register => REGISTER,
        Op::SetTemporaryPassword => SET_TEMP,
        Op::SetTemporaryPasswordAttributes => SET_TEMP_ATTRS,
        Op::GetCredentialInfo => GET_CREDENTIAL_INFO,
    }
}

fn content_ok(el: &Elem, content: Content) -> bool {
    match content {
        Content::Text => el.children.is_empty(),
        Content::Seq(parts) => seq_ok(el, parts),
        Content::Any => true,
    }
}

/// Walks the children once against the particles: a child may only match the current
/// particle or a later one, and every particle passed over must have reached its minimum.
fn seq_ok(el: &Elem, parts: &[Part]) -> bool {
    if !is_xml_space(&el.text) {
        return false;
    }
    let mut i = 0;
    let mut seen = 0u32;
    for c in &el.children {
        if c.ns.as_deref() != Some(VIP_NS) {
            return false;
        }
        loop {
            // Past the end: unknown, out of order or repeated beyond its particle.
            let Some(p) = parts.get(i) else {
                return false;
            };
            if p.name == c.name {
                break;
            }
            if seen < p.min {
                return false;
            }
            i += 1;
            seen = 0;
        }
        seen += 1;
        let Some(p) = parts.get(i) else {
            return false;
        };
        if seen > p.max || !content_ok(c, p.content) {
            return false;
        }
    }
    parts
        .iter()
        .skip(i)
        .enumerate()
        .all(|(k, p)| (if k == 0 { seen } else { 0 }) >= p.min)
}

/// True when the request element has its operation's structure.
pub(crate) fn structure_ok(op: Op, el: &Elem) -> bool {
    seq_ok(el, request_fields(op))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{parse, soap_body_op};

    fn ok(op: Op, inner: &str) -> bool {
        let doc = format!(
            "<S:Envelope xmlns:S=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:v=\"{VIP_NS}\" xmlns:o=\"urn:other\"><S:Body>{inner}</S:Body></S:Envelope>"
        );
        let root = parse(doc.as_bytes()).expect("parse");
        let el = soap_body_op(&root).expect("op");
        structure_ok(op, el)
    }

    #[test]
    fn sequences() {
        let p = Op::AuthenticateUser;
        let good = "<v:AuthenticateUserRequest>\n <v:requestId>abcd</v:requestId>\n <v:userId>u</v:userId><v:pin>1234</v:pin><v:otpAuthData><v:otp>123456</v:otp></v:otpAuthData><v:authContext><v:params><v:Key>authLevel.level</v:Key><v:Value>1</v:Value></v:params></v:authContext></v:AuthenticateUserRequest>";
        assert!(ok(p, good));
        // Minimal: no otpAuthData at all.
        assert!(ok(
            p,
            "<v:AuthenticateUserRequest><v:requestId>abcd</v:requestId><v:userId>u</v:userId></v:AuthenticateUserRequest>"
        ));
        for bad in [
            // out of order
            "<v:AuthenticateUserRequest><v:userId>u</v:userId><v:requestId>abcd</v:requestId></v:AuthenticateUserRequest>",
            "<v:AuthenticateUserRequest><v:requestId>abcd</v:requestId><v:userId>u</v:userId><v:otpAuthData><v:otp>123456</v:otp></v:otpAuthData><v:pin>1234</v:pin></v:AuthenticateUserRequest>",
            // missing
            "<v:AuthenticateUserRequest><v:requestId>abcd</v:requestId></v:AuthenticateUserRequest>",
            "<v:AuthenticateUserRequest><v:requestId>abcd</v:requestId><v:userId>u</v:userId><v:otpAuthData><v:otp2>123456</v:otp2></v:otpAuthData></v:AuthenticateUserRequest>",
            // duplicated
            "<v:AuthenticateUserRequest><v:requestId>abcd</v:requestId><v:userId>u</v:userId><v:userId>u</v:userId></v:AuthenticateUserRequest>",
            // unknown, foreign namespace, mixed content, children in a leaf
            "<v:AuthenticateUserRequest><v:requestId>abcd</v:requestId><v:userId>u</v:userId><v:extra/></v:AuthenticateUserRequest>",
            "<v:AuthenticateUserRequest><v:requestId>abcd</v:requestId><v:userId>u</v:userId><o:pin>1</o:pin></v:AuthenticateUserRequest>",
            "<v:AuthenticateUserRequest>x<v:requestId>abcd</v:requestId><v:userId>u</v:userId></v:AuthenticateUserRequest>",
            "<v:AuthenticateUserRequest><v:requestId><v:x/></v:requestId><v:userId>u</v:userId></v:AuthenticateUserRequest>",
            // Key/Value order
            "<v:AuthenticateUserRequest><v:requestId>abcd</v:requestId><v:userId>u</v:userId><v:authContext><v:params><v:Value>1</v:Value><v:Key>k</v:Key></v:params></v:authContext></v:AuthenticateUserRequest>",
        ] {
            assert!(!ok(p, bad), "{bad}");
        }
        assert!(!ok(
            Op::CheckOtp,
            "<v:CheckOtpRequest><v:requestId>abcd</v:requestId><v:userId>u</v:userId><v:pin>1234</v:pin><v:otpAuthData><v:otp>123456</v:otp></v:otpAuthData></v:CheckOtpRequest>"
        ));
        let ids = "<v:transactionId>abcd</v:transactionId>".repeat(20);
        assert!(ok(
            Op::PollPushStatus,
            &format!("<v:PollPushStatusRequest><v:requestId>abcd</v:requestId>{ids}</v:PollPushStatusRequest>")
        ));
        assert!(!ok(
            Op::PollPushStatus,
            &format!("<v:PollPushStatusRequest><v:requestId>abcd</v:requestId>{ids}<v:transactionId>x</v:transactionId></v:PollPushStatusRequest>")
        ));
        assert!(!ok(
            Op::AuthenticateUserWithPush,
            "<v:AuthenticateUserWithPushRequest><v:requestId>abcd</v:requestId><v:userId>u</v:userId><v:pushAuthData><v:requestParameters><v:Key>a</v:Key></v:requestParameters><v:displayParameters><v:Key>b</v:Key></v:displayParameters></v:pushAuthData></v:AuthenticateUserWithPushRequest>"
        ));
    }
}
