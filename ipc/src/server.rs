//! The daemon's half of the protocol, on tokio's async I/O (feature `tokio`).

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::{
    decode, encode, error_message, frame_len, ClientMessage, ErrorKind, IpcError, ServerMessage,
    PROTOCOL_VERSION,
};

/// Reads one frame body. `Ok(None)` on a clean end of stream before the first byte.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<Zeroizing<Vec<u8>>>, IpcError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut prefix[got..]).await {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(IpcError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IpcError::from_io(e)),
        }
    }
    let len = frame_len(prefix)?;
    let mut body = Zeroizing::new(vec![0u8; len]);
    r.read_exact(&mut body).await.map_err(IpcError::from_io)?;
    Ok(Some(body))
}

/// Reads one message. `Ok(None)` on a clean end of stream between messages.
pub async fn read_message<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<Option<T>, IpcError> {
    match read_frame(r).await? {
        Some(body) => decode(&body).map(Some),
        None => Ok(None),
    }
}

/// Writes one message as a frame.
pub async fn write_message<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> Result<(), IpcError> {
    let frame = encode(msg)?;
    w.write_all(&frame).await.map_err(IpcError::from_io)?;
    w.flush().await.map_err(IpcError::from_io)
}

/// The daemon's half of the handshake: reads the client's `Hello` and answers it. A client of
/// another version gets an `Error { kind: Version }` and [`IpcError::Version`] is returned.
pub async fn server_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
) -> Result<(), IpcError> {
    let msg = match read_message::<_, ClientMessage>(s).await {
        Ok(Some(m)) => m,
        Ok(None) => return Err(IpcError::Closed),
        Err(e) => {
            let _ = write_message(s, &error_message(ErrorKind::BadRequest, &e)).await;
            return Err(e);
        }
    };
    match msg {
        ClientMessage::Hello { version } if version == PROTOCOL_VERSION => {
            write_message(
                s,
                &ServerMessage::Hello {
                    version: PROTOCOL_VERSION,
                },
            )
            .await
        }
        ClientMessage::Hello { version } => {
            let e = IpcError::Version {
                ours: PROTOCOL_VERSION,
                theirs: version,
            };
            let _ = write_message(s, &error_message(ErrorKind::Version, &e)).await;
            Err(e)
        }
        ClientMessage::Authenticate(_) => {
            let e = IpcError::Unexpected("authenticate before hello");
            let _ = write_message(s, &error_message(ErrorKind::BadRequest, &e)).await;
            Err(e)
        }
    }
}
