//! The PAM module <-> daemon protocol, defined once for both ends.
//!
//! # Wire format
//!
//! A connection is a sequence of **frames**: a 4-byte big-endian length followed by that many
//! bytes of UTF-8 JSON (at most [`MAX_FRAME`]). The client speaks first:
//!
//! ```text
//! client                                         daemon
//! {"type":"hello","version":1}              ->
//!                                           <-   {"type":"hello","version":1}
//!                                                 (or {"type":"error","kind":"version",...} and close)
//! {"type":"authenticate","service":"sshd",
//!  "user":"alice","remote_host":"10.0.0.9",
//!  "tty":"ssh","answer":"123456",
//!  "state":"<base64>"}                      ->
//!                                           <-   {"type":"outcome","outcome":{"Accept":{...}}}
//!                                                 | {"type":"outcome","outcome":{"Challenge":{...}}}
//!                                                 | {"type":"error","kind":"...","message":"..."}
//! (more authenticate requests, or close)
//! ```
//!
//! `outcome` is an [`Outcome`] (the engine's decision, as the daemon converts it for PAM) as serde
//! writes it. `answer` is what the user typed
//! (absent on the first round unless the module already has something to send); it is held in
//! zeroizing memory on both ends and is never printed by `Debug`. `state` is the sealed State of
//! the previous Challenge, base64 (standard alphabet, padded).
//!
//! Both ends live here: a **blocking** client for the PAM module ([`Client`]), which uses only
//! `std::os::unix::net::UnixStream` with read/write timeouts (no runtime, no threads), and,
//! with the `tokio` feature, the daemon's async codec (`read_message`, `write_message`,
//! `server_handshake`). The PAM module builds this crate without features: what runs inside
//! sshd and sudo is this protocol, serde and the standard library.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

mod outcome;
#[cfg(any(test, feature = "tokio"))]
mod server;

pub use outcome::{Accept, Challenge, Factor, Outcome, Reject, RejectReason};
#[cfg(any(test, feature = "tokio"))]
pub use server::{read_frame, read_message, server_handshake, write_message};

/// The protocol version this build speaks. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame body either end accepts or sends (64 KiB).
pub const MAX_FRAME: usize = 64 * 1024;

/// Longest answer a client may send (a code, a PIN and code, a keyword: far below this).
pub const MAX_ANSWER: usize = 1024;

/// What the user typed: zeroized when dropped, never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Answer(Zeroizing<String>);

impl Answer {
    pub fn new(s: impl Into<String>) -> Self {
        Answer(Zeroizing::new(s.into()))
    }

    /// The answer's text; call only where it is needed.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The text, moved out without leaving a copy behind (the daemon turns it into its own
    /// zeroizing secret).
    pub fn into_inner(self) -> Zeroizing<String> {
        self.0
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Answer(<{} bytes redacted>)", self.0.len())
    }
}

impl Serialize for Answer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Answer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Answer::new)
    }
}

/// One round of a PAM login, as the module sends it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticateRequest {
    /// PAM_SERVICE (`sshd`, `sudo`): selects the login policy.
    pub service: String,
    /// PAM_USER.
    pub user: String,
    /// PAM_RHOST, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_host: Option<String>,
    /// PAM_TTY, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<String>,
    /// What the user typed; `None` on a first round with nothing to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
    /// The State of the Challenge being answered.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_base64")]
    pub state: Option<Vec<u8>>,
    /// pam_unix ran earlier in this PAM transaction and accepted the password (read from the
    /// result it records, `unix_setcred_return`): the first factor in-band enrollment needs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stack_password_checked: bool,
}

impl fmt::Debug for AuthenticateRequest {
    // Neither the answer nor the State reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateRequest")
            .field("service", &self.service)
            .field("user", &self.user)
            .field("remote_host", &self.remote_host)
            .field("tty", &self.tty)
            .field("answer", &self.answer.as_ref().map(|_| "<redacted>"))
            .field(
                "state",
                &self.state.as_ref().map(|s| format!("<{} bytes>", s.len())),
            )
            .field("stack_password_checked", &self.stack_password_checked)
            .finish()
    }
}

/// Messages from the PAM module to the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    Hello { version: u32 },
    Authenticate(AuthenticateRequest),
}

/// [`ClientMessage::Authenticate`] by reference, so the client never clones an answer.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessageRef<'a> {
    Authenticate(&'a AuthenticateRequest),
}

/// Why the daemon refused to answer a request with an [`Outcome`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The client speaks another protocol version.
    Version,
    /// The peer's uid/gid is not allowed to use the socket.
    Forbidden,
    /// Too many connections; try again later.
    Busy,
    /// The request was malformed or out of order.
    BadRequest,
    /// The daemon did not decide in time.
    Timeout,
    /// The daemon is shutting down or failed internally.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Version => "version",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Busy => "busy",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal",
        }
    }
}

/// Messages from the daemon to the PAM module.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    Hello { version: u32 },
    Outcome { outcome: Outcome },
    Error { kind: ErrorKind, message: String },
}

/// Everything that can go wrong on either end of the socket.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("cannot connect to {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("socket I/O: {0}")]
    Io(#[source] std::io::Error),
    #[error("timed out waiting for the other end")]
    Timeout,
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    FrameTooLarge(usize),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("connection closed")]
    Closed,
    /// Says what kind of problem, never the text that caused it: a mistyped answer must not
    /// reach a log line or the reply.
    #[error("malformed message: {0}")]
    Malformed(Malformation),
    #[error("protocol version mismatch: we speak {ours}, the other end {theirs}")]
    Version { ours: u32, theirs: u32 },
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    #[error("daemon refused the request ({}): {message}", kind.as_str())]
    Server { kind: ErrorKind, message: String },
}

/// Why a frame is not a message, without a word of the frame: serde_json's own messages quote
/// the input (`invalid type: integer `735911`, expected a string`, `unknown field `...``), so
/// only their category is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformation {
    /// Not JSON at all, or not UTF-8.
    Syntax,
    /// JSON, but not one of our messages (a missing, unknown or mistyped field, an unknown type).
    Data,
    /// The JSON ends early.
    Eof,
    /// A message that cannot be written (never expected).
    Unserializable,
}

impl fmt::Display for Malformation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformation::Syntax => "not valid JSON",
            Malformation::Data => "not a valid message (a missing, unknown or mistyped field)",
            Malformation::Eof => "the JSON ends early",
            Malformation::Unserializable => "cannot be serialized",
        })
    }
}

impl Malformation {
    fn of(e: &serde_json::Error) -> Self {
        match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
                Malformation::Syntax
            }
            serde_json::error::Category::Data => Malformation::Data,
            serde_json::error::Category::Eof => Malformation::Eof,
        }
    }
}

impl IpcError {
    fn from_io(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => IpcError::Timeout,
            std::io::ErrorKind::UnexpectedEof => IpcError::Truncated,
            _ => IpcError::Io(e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding (shared by both ends)
// ---------------------------------------------------------------------------------------------

/// Serializes `msg` into one frame (length prefix included), in zeroizing memory sized up front
/// so that no reallocation leaves a copy of an answer behind.
pub fn encode<T: Serialize>(msg: &T) -> Result<Zeroizing<Vec<u8>>, IpcError> {
    let mut buf = Zeroizing::new(Vec::with_capacity(4 + MAX_FRAME));
    buf.extend_from_slice(&[0u8; 4]);
    serde_json::to_writer(&mut *buf, msg)
        .map_err(|_| IpcError::Malformed(Malformation::Unserializable))?;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(IpcError::FrameTooLarge(len));
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

/// Parses one frame body.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, IpcError> {
    // serde_json's messages quote the input (an answer sent as a number, an unknown field's
    // name): only the category goes on.
    serde_json::from_slice(body).map_err(|e| IpcError::Malformed(Malformation::of(&e)))
}

fn frame_len(prefix: [u8; 4]) -> Result<usize, IpcError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(IpcError::FrameTooLarge(len));
    }
    Ok(len)
}

// ---------------------------------------------------------------------------------------------
// Blocking side (PAM module)
// ---------------------------------------------------------------------------------------------

/// Reads one frame body. `Ok(None)` on a clean end of stream before the first byte.
pub fn read_frame_blocking<R: Read>(r: &mut R) -> Result<Option<Zeroizing<Vec<u8>>>, IpcError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(IpcError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IpcError::from_io(e)),
        }
    }
    let len = frame_len(prefix)?;
    let mut body = Zeroizing::new(vec![0u8; len]);
    r.read_exact(&mut body).map_err(IpcError::from_io)?;
    Ok(Some(body))
}

/// Writes one message as a frame.
pub fn write_message_blocking<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), IpcError> {
    let frame = encode(msg)?;
    w.write_all(&frame).map_err(IpcError::from_io)?;
    w.flush().map_err(IpcError::from_io)
}

/// Reads one message; end of stream is [`IpcError::Closed`].
pub fn read_message_blocking<R: Read, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<T, IpcError> {
    match read_frame_blocking(r)? {
        Some(body) => decode(&body),
        None => Err(IpcError::Closed),
    }
}

/// The PAM module's connection to the daemon: blocking, with timeouts, no threads.
pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connects to `path`, sets the read and write timeouts and exchanges `Hello`s.
    ///
    /// `io_timeout` bounds every read, so it must cover the longest decision the daemon may take
    /// (a blocking push). Connecting to a local socket does not wait for the daemon to accept.
    pub fn connect(path: &Path, io_timeout: Duration) -> Result<Client, IpcError> {
        let stream = UnixStream::connect(path).map_err(|source| IpcError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        Self::handshake(stream, io_timeout)
    }

    /// Runs the handshake on an already connected stream (tests use a socketpair).
    pub fn handshake(stream: UnixStream, io_timeout: Duration) -> Result<Client, IpcError> {
        let timeout = Some(io_timeout.max(Duration::from_millis(1)));
        stream.set_read_timeout(timeout).map_err(IpcError::Io)?;
        stream.set_write_timeout(timeout).map_err(IpcError::Io)?;
        let mut client = Client { stream };
        let hello = ClientMessage::Hello {
            version: PROTOCOL_VERSION,
        };
        if let Err(e) = write_message_blocking(&mut client.stream, &hello) {
            // A daemon that refused us may have closed before reading; its reason is still
            // waiting in our receive buffer.
            if let Ok(ServerMessage::Error { kind, message }) =
                read_message_blocking::<_, ServerMessage>(&mut client.stream)
            {
                return Err(IpcError::Server { kind, message });
            }
            return Err(e);
        }
        match read_message_blocking::<_, ServerMessage>(&mut client.stream)? {
            ServerMessage::Hello { version } if version == PROTOCOL_VERSION => Ok(client),
            ServerMessage::Hello { version } => Err(IpcError::Version {
                ours: PROTOCOL_VERSION,
                theirs: version,
            }),
            ServerMessage::Error { kind, message } => Err(IpcError::Server { kind, message }),
            ServerMessage::Outcome { .. } => Err(IpcError::Unexpected("outcome before hello")),
        }
    }

    /// Sends one round and waits for the daemon's decision.
    pub fn authenticate(&mut self, req: &AuthenticateRequest) -> Result<Outcome, IpcError> {
        // Serialized from a borrow straight into zeroizing memory: no copy of the answer.
        write_message_blocking(&mut self.stream, &ClientMessageRef::Authenticate(req))?;
        match read_message_blocking::<_, ServerMessage>(&mut self.stream)? {
            ServerMessage::Outcome { outcome } => Ok(outcome),
            ServerMessage::Error { kind, message } => Err(IpcError::Server { kind, message }),
            ServerMessage::Hello { .. } => Err(IpcError::Unexpected("hello after handshake")),
        }
    }
}

/// An `Error` message carrying `e`'s description. Pass only descriptions that never contain
/// input: an [`IpcError`] qualifies (see [`Malformation`]), a peer's text does not.
pub fn error_message(kind: ErrorKind, e: &dyn fmt::Display) -> ServerMessage {
    ServerMessage::Error {
        kind,
        message: e.to_string(),
    }
}

mod opt_base64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => {
                s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Some)
            .map_err(|_| serde::de::Error::custom("state is not valid base64"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn request() -> AuthenticateRequest {
        AuthenticateRequest {
            service: "sshd".into(),
            user: "alice".into(),
            remote_host: Some("192.0.2.7".into()),
            tty: Some("ssh".into()),
            answer: Some(Answer::new("123456")),
            state: Some(vec![1, 2, 3, 250]),
            stack_password_checked: true,
        }
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn round_trip_every_message() {
        let msgs = vec![
            ClientMessage::Hello {
                version: PROTOCOL_VERSION,
            },
            ClientMessage::Authenticate(request()),
            ClientMessage::Authenticate(AuthenticateRequest {
                service: "sudo".into(),
                user: "bob".into(),
                ..Default::default()
            }),
        ];
        for m in msgs {
            let bytes = encode(&m).unwrap();
            let back: ClientMessage = read_message_blocking(&mut Cursor::new(&bytes[..])).unwrap();
            assert_eq!(back, m);
        }
        let outcomes = vec![
            Outcome::Accept(Accept {
                factor: Factor::Push,
                credential_id: Some("VSMT1234".into()),
                credential_type: None,
                authn_id: Some("a1".into()),
                failed_open: false,
            }),
            Outcome::Reject(Reject {
                reason: RejectReason::BadCode,
                message: "nope".into(),
            }),
            Outcome::Challenge(Challenge {
                prompt: "Approve and select 42, then press Enter".into(),
                echo: true,
                state: vec![9; 120],
            }),
        ];
        for o in outcomes {
            let bytes = encode(&ServerMessage::Outcome { outcome: o.clone() }).unwrap();
            let back: ServerMessage = read_message_blocking(&mut Cursor::new(&bytes[..])).unwrap();
            match (back, o) {
                (
                    ServerMessage::Outcome {
                        outcome: Outcome::Accept(a),
                    },
                    Outcome::Accept(b),
                ) => {
                    assert_eq!(a, b)
                }
                (
                    ServerMessage::Outcome {
                        outcome: Outcome::Reject(a),
                    },
                    Outcome::Reject(b),
                ) => {
                    assert_eq!(a, b)
                }
                (
                    ServerMessage::Outcome {
                        outcome: Outcome::Challenge(a),
                    },
                    Outcome::Challenge(b),
                ) => assert_eq!(a, b),
                (other, _) => panic!("wrong message back: {other:?}"),
            }
        }
    }

    #[test]
    fn wire_shape_is_stable() {
        let bytes = encode(&ClientMessage::Authenticate(request())).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes[4..]).unwrap();
        assert_eq!(json["type"], "authenticate");
        assert_eq!(json["answer"], "123456");
        assert_eq!(json["state"], "AQID+g==");
        let hello = encode(&ClientMessage::Hello { version: 1 }).unwrap();
        assert_eq!(&hello[4..], br#"{"type":"hello","version":1}"#);
    }

    #[test]
    fn debug_never_shows_answer_or_state() {
        let r = request();
        let shown = format!("{r:?} {:?}", ClientMessage::Authenticate(r.clone()));
        assert!(!shown.contains("123456"), "{shown}");
        assert!(!shown.contains("250"), "{shown}");
        assert!(shown.contains("alice"));
    }

    #[test]
    fn answer_moves_out_whole() {
        let a = Answer::new("654321");
        assert_eq!(a.into_inner().as_str(), "654321");
    }

    #[test]
    fn oversize_frame_is_refused_both_ways() {
        // Reading: the length prefix alone condemns the frame; the body is never allocated.
        let prefix = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let err = read_frame_blocking(&mut Cursor::new(&prefix[..])).unwrap_err();
        assert!(
            matches!(err, IpcError::FrameTooLarge(n) if n == MAX_FRAME + 1),
            "{err}"
        );
        let err = read_frame_blocking(&mut Cursor::new(&u32::MAX.to_be_bytes()[..])).unwrap_err();
        assert!(matches!(err, IpcError::FrameTooLarge(_)));
        // Writing: refused before anything is sent.
        let big = AuthenticateRequest {
            service: "x".repeat(MAX_FRAME),
            user: "alice".into(),
            ..Default::default()
        };
        assert!(matches!(
            encode(&ClientMessage::Authenticate(big)),
            Err(IpcError::FrameTooLarge(_))
        ));
    }

    #[test]
    fn exactly_max_frame_is_accepted() {
        let body = vec![b' '; MAX_FRAME];
        let got = read_frame_blocking(&mut Cursor::new(frame(&body)))
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), MAX_FRAME);
    }

    #[test]
    fn truncated_frames_are_errors_and_clean_eof_is_not() {
        assert!(read_frame_blocking(&mut Cursor::new(Vec::new()))
            .unwrap()
            .is_none());
        let err = read_frame_blocking(&mut Cursor::new(vec![0u8, 0])).unwrap_err();
        assert!(matches!(err, IpcError::Truncated), "{err}");
        let mut f = frame(br#"{"type":"hello","version":1}"#);
        f.truncate(f.len() - 3);
        let err = read_frame_blocking(&mut Cursor::new(f)).unwrap_err();
        assert!(matches!(err, IpcError::Truncated), "{err}");
        let err =
            read_message_blocking::<_, ClientMessage>(&mut Cursor::new(Vec::new())).unwrap_err();
        assert!(matches!(err, IpcError::Closed));
    }

    #[test]
    fn garbage_json_and_unknown_fields_are_malformed() {
        for body in [
            &b"not json"[..],
            br#"{"type":"hello"}"#,
            br#"{"type":"hello","version":1,"extra":true}"#,
            br#"{"type":"launch_missiles"}"#,
            br#"{"type":"authenticate","service":"s","user":"u","state":"***"}"#,
            br#"{"type":"authenticate","service":"s","user":"u","answer":123}"#,
            &[0xff, 0xfe, 0x00][..],
        ] {
            let err = read_message_blocking::<_, ClientMessage>(&mut Cursor::new(frame(body)))
                .unwrap_err();
            assert!(matches!(err, IpcError::Malformed(_)), "{body:?}: {err}");
        }
    }

    /// Frames a mistyped client could send with a code in them (as a number, in the wrong
    /// field, as a field name, in a broken State, in a frame that is not JSON at all).
    const SECRET: &str = "739164";

    fn leaky_bodies() -> Vec<Vec<u8>> {
        let auth = r#"{"type":"authenticate","service":"sshd","user":"alice""#;
        [
            format!(r#"{auth},"answer":{SECRET}}}"#),
            format!(r#"{auth},"answer":["{SECRET}"]}}"#),
            format!(r#"{auth},"answer":{{"code":"{SECRET}"}}}}"#),
            format!(r#"{auth},"answer":"{SECRET}","bogus":1}}"#),
            format!(r#"{auth},"{SECRET}":"x"}}"#),
            format!(r#"{auth},"answer":"ok","state":"{SECRET}!*"}}"#),
            format!(r#"{auth},"answer":"{SECRET}""#),
            format!(r#"{auth},"answer":"{SECRET}" x}}"#),
            format!(r#"{auth},"answer":{SECRET}x}}"#),
            format!(r#"{auth},"tty":true,"answer":"{SECRET}"}}"#),
            format!(r#"{{"type":"{SECRET}"}}"#),
            format!(r#"{{"type":"hello","version":"{SECRET}"}}"#),
            format!(r#"{{"type":"hello","version":-{SECRET}}}"#),
            format!(r#"{{"type":"hello","version":1,"{SECRET}":1}}"#),
            SECRET.to_string(),
            format!("{{{SECRET}"),
        ]
        .into_iter()
        .map(String::into_bytes)
        .chain([[b"\xff".as_slice(), SECRET.as_bytes()].concat()])
        .collect()
    }

    #[test]
    fn malformed_error_never_echoes_the_input() {
        for body in leaky_bodies() {
            let err = read_message_blocking::<_, ClientMessage>(&mut Cursor::new(frame(&body)))
                .unwrap_err();
            assert!(matches!(err, IpcError::Malformed(_)), "{err}");
            let reply = encode(&error_message(ErrorKind::BadRequest, &err)).unwrap();
            let shown = format!("{err} | {err:?} | {}", String::from_utf8_lossy(&reply[4..]));
            assert!(
                !shown.contains(SECRET),
                "{}: {shown}",
                String::from_utf8_lossy(&body)
            );
            // The client decodes with the same code: a broken reply says nothing either.
            let err = read_message_blocking::<_, ServerMessage>(&mut Cursor::new(frame(&body)))
                .unwrap_err();
            assert!(!format!("{err} {err:?}").contains(SECRET), "{err}");
        }
    }

    #[tokio::test]
    async fn server_handshake_never_echoes_the_input() {
        for body in leaky_bodies() {
            let (mut client_end, mut server_end) = pair();
            client_end.write_all(&frame(&body)).unwrap();
            let err = server_handshake(&mut server_end).await.unwrap_err();
            assert!(!format!("{err} {err:?}").contains(SECRET), "{err}");
            drop(server_end);
            let reply: ServerMessage = read_message_blocking(&mut client_end).unwrap();
            let ServerMessage::Error { kind, message } = reply else {
                panic!("expected an error, got {reply:?}")
            };
            assert_eq!(kind, ErrorKind::BadRequest);
            assert!(!message.contains(SECRET), "{message}");
        }
    }

    fn pair() -> (UnixStream, tokio::net::UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        (a, tokio::net::UnixStream::from_std(b).unwrap())
    }

    #[tokio::test]
    async fn client_and_server_talk() {
        let (client_end, mut server_end) = pair();
        let client = tokio::task::spawn_blocking(move || {
            let mut c = Client::handshake(client_end, Duration::from_secs(5)).unwrap();
            let first = c.authenticate(&request()).unwrap();
            let second = c.authenticate(&request()).unwrap_err();
            (first, second)
        });
        server_handshake(&mut server_end).await.unwrap();
        let msg: ClientMessage = read_message(&mut server_end).await.unwrap().unwrap();
        let ClientMessage::Authenticate(req) = msg else {
            panic!("expected authenticate")
        };
        assert_eq!(req.answer.as_ref().unwrap().expose(), "123456");
        assert_eq!(req.state.as_deref(), Some(&[1u8, 2, 3, 250][..]));
        let reply = Outcome::Reject(Reject {
            reason: RejectReason::BadCode,
            message: "no".into(),
        });
        write_message(&mut server_end, &ServerMessage::Outcome { outcome: reply })
            .await
            .unwrap();
        let _: ClientMessage = read_message(&mut server_end).await.unwrap().unwrap();
        write_message(
            &mut server_end,
            &error_message(ErrorKind::Busy, &"too many"),
        )
        .await
        .unwrap();
        let (first, second) = client.await.unwrap();
        assert!(matches!(first, Outcome::Reject(r) if r.reason == RejectReason::BadCode));
        assert!(
            matches!(
                second,
                IpcError::Server {
                    kind: ErrorKind::Busy,
                    ..
                }
            ),
            "{second}"
        );
        // The client hung up: a clean end of stream.
        assert!(read_message::<_, ClientMessage>(&mut server_end)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn version_mismatch_is_refused_by_the_server() {
        let (mut client_end, mut server_end) = pair();
        let client = tokio::task::spawn_blocking(move || {
            write_message_blocking(&mut client_end, &ClientMessage::Hello { version: 99 }).unwrap();
            read_message_blocking::<_, ServerMessage>(&mut client_end).unwrap()
        });
        let err = server_handshake(&mut server_end).await.unwrap_err();
        assert!(
            matches!(
                err,
                IpcError::Version {
                    ours: 1,
                    theirs: 99
                }
            ),
            "{err}"
        );
        let reply = client.await.unwrap();
        assert!(matches!(
            reply,
            ServerMessage::Error {
                kind: ErrorKind::Version,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn version_mismatch_is_refused_by_the_client() {
        let (client_end, mut server_end) = pair();
        let client = tokio::task::spawn_blocking(move || {
            Client::handshake(client_end, Duration::from_secs(5))
                .err()
                .unwrap()
        });
        let _: ClientMessage = read_message(&mut server_end).await.unwrap().unwrap();
        write_message(&mut server_end, &ServerMessage::Hello { version: 2 })
            .await
            .unwrap();
        let err = client.await.unwrap();
        assert!(
            matches!(err, IpcError::Version { ours: 1, theirs: 2 }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn server_refuses_request_before_hello_and_garbage() {
        let (mut client_end, mut server_end) = pair();
        let client = tokio::task::spawn_blocking(move || {
            write_message_blocking(&mut client_end, &ClientMessage::Authenticate(request()))
                .unwrap();
            read_message_blocking::<_, ServerMessage>(&mut client_end).unwrap()
        });
        assert!(matches!(
            server_handshake(&mut server_end).await,
            Err(IpcError::Unexpected(_))
        ));
        assert!(matches!(
            client.await.unwrap(),
            ServerMessage::Error {
                kind: ErrorKind::BadRequest,
                ..
            }
        ));

        let (mut client_end, mut server_end) = pair();
        client_end.write_all(&frame(b"{{{{")).unwrap();
        assert!(matches!(
            server_handshake(&mut server_end).await,
            Err(IpcError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn async_reader_refuses_oversize_and_truncated() {
        let (mut client_end, mut server_end) = pair();
        client_end
            .write_all(&((MAX_FRAME as u32) + 1).to_be_bytes())
            .unwrap();
        assert!(matches!(
            read_frame(&mut server_end).await,
            Err(IpcError::FrameTooLarge(_))
        ));

        let (mut client_end, mut server_end) = pair();
        client_end.write_all(&[0, 0, 0, 10, b'{']).unwrap();
        drop(client_end);
        assert!(matches!(
            read_frame(&mut server_end).await,
            Err(IpcError::Truncated)
        ));
    }

    #[test]
    fn client_reads_a_refusal_sent_before_its_hello() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let refusal = ServerMessage::Error {
            kind: ErrorKind::Forbidden,
            message: "no".into(),
        };
        write_message_blocking(&mut b, &refusal).unwrap();
        drop(b);
        let err = Client::handshake(a, Duration::from_secs(2)).err().unwrap();
        assert!(
            matches!(
                err,
                IpcError::Server {
                    kind: ErrorKind::Forbidden,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn client_read_times_out() {
        let (a, _b) = UnixStream::pair().unwrap();
        let start = std::time::Instant::now();
        let err = Client::handshake(a, Duration::from_millis(100))
            .err()
            .unwrap();
        assert!(matches!(err, IpcError::Timeout), "{err}");
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn connect_to_missing_socket_is_a_connect_error() {
        let err = Client::connect(
            Path::new("/nonexistent/vip-bridge/pam.sock"),
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(matches!(err, IpcError::Connect { .. }), "{err}");
    }
}
