//! A bare UDP responder: the machine's limit for RADIUS-sized datagrams.
//!
//! Each datagram is answered with an Access-Accept of the same size. Without a secret the reply
//! is the request with its Code changed (the generator needs `--no-verify`); with a secret it is
//! a correctly signed Access-Accept (Message-Authenticator first, Reply-Message padding).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::radius::{self, Secret};

/// A running echo server; [`EchoServer::stop`] ends it.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoServer {
    /// Binds `listen` and answers on `threads` threads sharing the socket.
    pub fn start(
        listen: SocketAddr,
        threads: usize,
        secret: Option<Secret>,
    ) -> std::io::Result<EchoServer> {
        let sock = crate::load::udp_socket(listen, 8 << 20, false)?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let addr = sock.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for _ in 0..threads.max(1) {
            let s = sock.try_clone()?;
            let stop = stop.clone();
            let secret = secret.clone();
            handles.push(std::thread::spawn(move || serve(s, &stop, secret.as_ref())));
        }
        Ok(EchoServer {
            addr,
            stop,
            threads: handles,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops and joins the threads.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Serves until the process is killed.
    pub fn wait(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The answer to one datagram, or `None` to stay silent (shorter than a RADIUS header).
pub fn reply_to(req: &[u8], secret: Option<&Secret>) -> Option<Vec<u8>> {
    let p = radius::framed(req).ok()?;
    match secret {
        Some(secret) => {
            let mut auth = [0u8; 16];
            auth.copy_from_slice(&p[4..20]);
            radius::build_reply(
                radius::ACCESS_ACCEPT,
                p[1],
                &auth,
                secret,
                &[],
                Some(p.len()),
            )
            .ok()
        }
        None => {
            let mut r = p.to_vec();
            r[0] = radius::ACCESS_ACCEPT;
            Some(r)
        }
    }
}

fn serve(sock: UdpSocket, stop: &AtomicBool, secret: Option<&Secret>) {
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((n, peer)) => {
                if let Some(r) = reply_to(&buf[..n], secret) {
                    let _ = sock.send_to(&r, peer);
                }
            }
            Err(_) => continue,
        }
    }
}
