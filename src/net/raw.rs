//! A raw client connection for probing a host: connect with a time limit, send any bytes
//! (whole, one byte at a time, half-closed), and read whatever comes back as PDUs with a
//! deadline, telling a reply from silence, a close and bytes that are not DCE/RPC.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::framing::{PduReader, ReadError};

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP handshake did not finish in time.
    #[error("connect to {addr} timed out after {limit:?}")]
    Timeout {
        /// The host.
        addr: SocketAddr,
        /// The limit.
        limit: Duration,
    },
    /// The handshake failed (refused, unreachable).
    #[error("connect to {addr}: {source}")]
    Io {
        /// The host.
        addr: SocketAddr,
        /// What the socket said.
        source: io::Error,
    },
}

/// How the host ended a connection.
#[derive(Debug, thiserror::Error)]
pub enum Closed {
    /// An orderly close between PDUs.
    #[error("closed")]
    Clean,
    /// A close or reset in the middle of a PDU, or a socket error.
    #[error("closed: {0}")]
    Broken(ReadError),
    /// An earlier read was abandoned mid-PDU (silence or garbage), so the stream's framing
    /// is lost and nothing more can be read from it.
    #[error("connection unusable after an earlier timeout")]
    Unusable,
}

/// What a wait for the next PDU found.
#[derive(Debug)]
pub enum Received {
    /// One whole PDU.
    Pdu(Vec<u8>),
    /// The host closed (or reset) the connection.
    Closed(Closed),
    /// Nothing within the wait, the connection still open.
    Silent,
    /// Bytes that do not frame as DCE/RPC (or announce an oversized PDU).
    Garbage(ReadError),
}

/// One raw connection to a host.
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    reader: PduReader,
    handshake: Duration,
    /// The reader was abandoned mid-read: nothing more can be read.
    broken: bool,
}

impl RawConn {
    /// Connects to `addr`, giving up after `limit`.
    pub async fn connect(addr: SocketAddr, limit: Duration) -> Result<RawConn, ConnectError> {
        let start = Instant::now();
        let stream = tokio::time::timeout(limit, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout { addr, limit })?
            .map_err(|source| ConnectError::Io { addr, source })?;
        // Probes send whole PDUs and time the replies: no Nagle delay.
        let _ = stream.set_nodelay(true);
        Ok(RawConn {
            stream,
            reader: PduReader::new(),
            handshake: start.elapsed(),
            broken: false,
        })
    }

    /// How long the TCP handshake took (a measure of the network distance to the host).
    pub fn handshake(&self) -> Duration {
        self.handshake
    }

    /// The client's own address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.stream.local_addr().ok()
    }

    /// Sends `bytes`.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Sends `bytes` one at a time with `pause` after each (a slow sender). On failure, how
    /// many bytes went out before the host hung up.
    pub async fn send_slowly(
        &mut self,
        bytes: &[u8],
        pause: Duration,
    ) -> Result<(), (usize, io::Error)> {
        for (i, b) in bytes.iter().enumerate() {
            self.send(std::slice::from_ref(b))
                .await
                .map_err(|e| (i, e))?;
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }

    /// Half-closes the connection: the host sees the end of the stream, replies can still
    /// come back.
    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Waits up to `within` for the next PDU.
    pub async fn next_pdu(&mut self, within: Duration) -> Received {
        if self.broken {
            return Received::Closed(Closed::Unusable);
        }
        // The idle limit inside the reader keeps its buffer consistent; the outer bound stops
        // a host that trickles bytes forever.
        let read = self.reader.next_idle(&mut self.stream, within);
        match tokio::time::timeout(within * 2 + Duration::from_millis(100), read).await {
            Err(_) => {
                self.broken = true;
                Received::Silent
            }
            Ok(Ok(pdu)) => Received::Pdu(pdu.to_vec()),
            Ok(Err(ReadError::Idle(_))) => Received::Silent,
            Ok(Err(ReadError::Closed)) => Received::Closed(Closed::Clean),
            Ok(Err(e @ (ReadError::Truncated { .. } | ReadError::Io(_)))) => {
                Received::Closed(Closed::Broken(e))
            }
            Ok(Err(e)) => {
                self.broken = true;
                Received::Garbage(e)
            }
        }
    }
}

/// Whether `addr` accepts a TCP connection within `limit` (the connection is dropped).
pub async fn reachable(addr: SocketAddr, limit: Duration) -> Result<(), ConnectError> {
    RawConn::connect(addr, limit).await.map(drop)
}

#[cfg(test)]
mod test {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A bind PDU's 16-byte header announcing `frag_len` bytes (C706 12.6.3).
    fn header(frag_len: u16) -> Vec<u8> {
        let mut h = vec![5, 0, 11, 3, 0x10, 0, 0, 0];
        h.extend_from_slice(&frag_len.to_le_bytes());
        h.extend_from_slice(&[0, 0, 2, 0, 0, 0]);
        h
    }

    #[tokio::test]
    async fn test_pdu_silence_close_and_garbage() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut byte = [0u8; 1];
            s.read_exact(&mut byte).await.unwrap();
            s.write_all(&header(16)).await.unwrap();
            // Wait for the client's second byte before hanging up, so silence comes first.
            s.read_exact(&mut byte).await.unwrap();
            drop(s);
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(&[0xde; 32]).await.unwrap();
            s.read_exact(&mut byte).await.ok();
        });
        let limit = Duration::from_secs(10);
        let mut c = RawConn::connect(addr, limit).await.unwrap();
        c.send(&[1]).await.unwrap();
        assert!(matches!(c.next_pdu(limit).await, Received::Pdu(p) if p.len() == 16));
        assert!(matches!(
            c.next_pdu(Duration::from_millis(50)).await,
            Received::Silent
        ));
        c.send_slowly(&[2], Duration::ZERO).await.unwrap();
        assert!(matches!(
            c.next_pdu(limit).await,
            Received::Closed(Closed::Clean)
        ));
        let mut c = RawConn::connect(addr, limit).await.unwrap();
        assert!(matches!(c.next_pdu(limit).await, Received::Garbage(_)));
        assert!(matches!(
            c.next_pdu(limit).await,
            Received::Closed(Closed::Unusable)
        ));
        c.shutdown().await;
        server.await.unwrap();
    }

    #[tokio::test]
    async fn test_refused() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        // The listener is gone: nothing accepts there.
        let e = reachable(addr, Duration::from_secs(10)).await.unwrap_err();
        assert!(matches!(e, ConnectError::Io { .. }), "{e}");
    }
}
