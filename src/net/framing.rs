//! Reading whole PDUs from a socket: the DCE/RPC framing over any async byte stream.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::wire::rpc::frame_len;

/// Largest PDU accepted from a peer. KMS PDUs are a few hundred bytes and Windows caps
/// fragments at 5840; anything near the u16 maximum is a lie or an attack.
pub const MAX_PDU: usize = 16 * 1024;

/// Why no PDU could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection between PDUs.
    #[error("connection closed")]
    Closed,
    /// The peer closed the connection inside a PDU.
    #[error("connection closed inside a PDU ({have} of {need} bytes)")]
    Truncated {
        /// Bytes that arrived.
        have: usize,
        /// Bytes the header announced.
        need: usize,
    },
    /// Nothing arrived for the idle limit.
    #[error("idle for {0:?}")]
    Idle(std::time::Duration),
    /// The bytes are not DCE/RPC.
    #[error("not a DCE/RPC PDU: {0}")]
    NotRpc(crate::wire::Error),
    /// The PDU announces more than [`MAX_PDU`] bytes.
    #[error("PDU of {0} bytes exceeds the {MAX_PDU}-byte limit")]
    TooLarge(usize),
    /// A socket error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Buffers a byte stream and yields whole PDUs.
#[derive(Debug, Default)]
pub struct PduReader {
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    start: usize,
    /// Length of the PDU last returned, consumed on the next call.
    last: usize,
}

impl PduReader {
    /// An empty reader.
    pub fn new() -> PduReader {
        PduReader {
            buf: Vec::with_capacity(4096),
            start: 0,
            last: 0,
        }
    }

    /// Bytes buffered beyond the PDU last returned.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start - self.last
    }

    /// Reads until one whole PDU is buffered and returns it.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<&[u8], ReadError> {
        self.next_within(io, None).await
    }

    /// Like [`next`](Self::next), but fails with [`ReadError::Idle`] when no byte arrives for
    /// `idle`: a slow sender is not idle, a silent one is.
    pub async fn next_idle<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        idle: std::time::Duration,
    ) -> Result<&[u8], ReadError> {
        self.next_within(io, Some(idle)).await
    }

    async fn next_within<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        idle: Option<std::time::Duration>,
    ) -> Result<&[u8], ReadError> {
        self.start += self.last;
        self.last = 0;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        loop {
            let avail = &self.buf[self.start..];
            if let Some(len) = frame_len(avail).map_err(ReadError::NotRpc)? {
                if len > MAX_PDU {
                    return Err(ReadError::TooLarge(len));
                }
                if avail.len() >= len {
                    self.last = len;
                    return Ok(&self.buf[self.start..self.start + len]);
                }
            }
            if self.start > 0 && self.buf.len() + 2048 > self.buf.capacity() {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let old = self.buf.len();
            self.buf.resize(old + 2048, 0);
            let read = io.read(&mut self.buf[old..]);
            let n = match idle {
                Some(limit) => match tokio::time::timeout(limit, read).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.buf.truncate(old);
                        return Err(ReadError::Idle(limit));
                    }
                },
                None => read.await,
            };
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e.into());
                }
            };
            self.buf.truncate(old + n);
            if n == 0 {
                let have = self.buf.len() - self.start;
                let need = frame_len(&self.buf[self.start..])
                    .ok()
                    .flatten()
                    .unwrap_or(16);
                return Err(if have == 0 {
                    ReadError::Closed
                } else {
                    ReadError::Truncated { have, need }
                });
            }
        }
    }
}
