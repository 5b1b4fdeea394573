//! The PAM socket protocol (the vip-ipc crate, ipc/src), both directions, over an in-memory stream:
//!
//! - daemon side: `server_handshake` then `read_message::<ClientMessage>` until the stream
//!   ends or fails, as pam_door's `rounds` does (the Error replies it writes go to a sink), and
//!   what `decide` does with a request (answer moved into a `Secret`, fields logged);
//! - PAM-module side: `read_message_blocking::<ServerMessage>` frame after frame, as
//!   `Client::handshake` / `Client::authenticate` do.
//!
//! Every decoded `ClientMessage` must survive encode -> decode unchanged.
//!
//! Input: one byte whose low 3 bits give the read chunk size (1..=8 octets per read, so
//! length prefixes and bodies arrive split), then the byte stream.

#![no_main]

use std::future::Future;
use std::io::{self, Read};
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use vip_core::secret::Secret;
use vip_ipc::{self as ipc, ClientMessage, ErrorKind, IpcError, ServerMessage};

/// A stream that reads `input` `chunk` octets at a time and swallows writes.
struct Mem<'a> {
    input: &'a [u8],
    chunk: usize,
    written: usize,
}

impl Mem<'_> {
    fn next(&mut self, room: usize) -> &[u8] {
        let n = room.min(self.chunk).min(self.input.len());
        let (head, tail) = self.input.split_at(n);
        self.input = tail;
        head
    }
}

impl AsyncRead for Mem<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let room = buf.remaining();
        let head = self.next(room);
        buf.put_slice(head);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Mem<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written += buf.len();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Read for Mem<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let head = self.next(buf.len());
        let n = head.len();
        buf[..n].copy_from_slice(head);
        Ok(n)
    }
}

/// Runs a future over the in-memory stream, which never waits: one poll must finish it.
fn run<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the IPC codec waited on a stream that is always ready"),
    }
}

fn round_trip(msg: &ClientMessage) {
    if let Ok(frame) = ipc::encode(msg) {
        let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        assert_eq!(len, frame.len() - 4);
        let back: ClientMessage = ipc::decode(&frame[4..]).expect("our own frame decodes");
        assert_eq!(&back, msg);
    }
}

/// The daemon's side of one connection (pam_door.rs `rounds`).
fn daemon(input: &[u8], chunk: usize) {
    let mut s = Mem {
        input,
        chunk,
        written: 0,
    };
    if run(ipc::server_handshake(&mut s)).is_err() {
        return;
    }
    // Each message consumes at least its 4-octet prefix, so this ends.
    loop {
        let msg = match run(ipc::read_message::<_, ClientMessage>(&mut s)) {
            Ok(None) => return,
            Ok(Some(m)) => m,
            Err(e) => {
                let reply = ipc::error_message(ErrorKind::BadRequest, &e);
                let _ = run(ipc::write_message(&mut s, &reply));
                return;
            }
        };
        round_trip(&msg);
        let _ = format!("{msg:?}");
        match msg {
            ClientMessage::Hello { .. } => {
                let e = IpcError::Unexpected("a second hello");
                let _ = run(ipc::write_message(
                    &mut s,
                    &ipc::error_message(ErrorKind::BadRequest, &e),
                ));
                return;
            }
            ClientMessage::Authenticate(mut req) => {
                let _ = (req.service.len(), req.user.chars().count());
                let secret = req.answer.take().map(|a| Secret::from(a.into_inner()));
                let _ = secret.as_ref().map(|s| s.expose().len());
                let _ = req.state.take().filter(|s| !s.is_empty());
            }
        }
    }
}

/// The PAM module's side (ipc.rs `Client`): server messages until the stream ends or fails.
fn module(input: &[u8], chunk: usize) {
    let mut s = Mem {
        input,
        chunk,
        written: 0,
    };
    loop {
        match ipc::read_message_blocking::<_, ServerMessage>(&mut s) {
            Ok(msg) => {
                let _ = format!("{msg:?}");
                if let ServerMessage::Outcome { outcome } = &msg {
                    let _ = outcome.kind();
                }
                // What the module receives, the daemon must be able to send back.
                let _ = ipc::encode(&msg);
            }
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first & 7) + 1;
    daemon(stream, chunk);
    module(stream, chunk);
});
