//! Reading whole PDUs from a socket: the DCE/RPC framing over any async byte stream.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use super::timer::LazyTimer;
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
    /// A PDU had begun but was not whole within the PDU limit: a sender too slow to serve.
    #[error("PDU not whole within {0:?} of its first byte")]
    Slow(std::time::Duration),
    /// The bytes are not DCE/RPC.
    #[error("not a DCE/RPC PDU: {0}")]
    NotRpc(crate::wire::Error),
    /// The PDU announces more than the reader's limit ([`MAX_PDU`] unless set lower).
    #[error("PDU of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Bytes the header announced.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A socket error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Time limits on reading one PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Longest silence: no byte for this long fails with [`ReadError::Idle`].
    pub idle: Duration,
    /// Longest a PDU may take from its first byte to its last: a sender dripping bytes is
    /// never silent, but fails with [`ReadError::Slow`] once this passes.
    pub pdu: Duration,
}

/// Buffers a byte stream and yields whole PDUs.
#[derive(Debug)]
pub struct PduReader {
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    start: usize,
    /// Length of the PDU last returned, consumed on the next call.
    last: usize,
    /// Largest PDU accepted.
    max: usize,
    /// The idle and PDU limits' one timer, made on the first timed read.
    timer: Option<LazyTimer>,
}

impl Default for PduReader {
    fn default() -> Self {
        PduReader::new()
    }
}

impl PduReader {
    /// An empty reader.
    pub fn new() -> PduReader {
        PduReader {
            buf: Vec::with_capacity(4096),
            start: 0,
            last: 0,
            max: MAX_PDU,
            timer: None,
        }
    }

    /// Accepts PDUs of at most `max` bytes (never more than [`MAX_PDU`]) from the next read
    /// on: a host lowers it for a connection that has not bound yet.
    pub fn set_max(&mut self, max: usize) {
        self.max = max.min(MAX_PDU);
    }

    /// Bytes buffered beyond the PDU last returned.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start - self.last
    }

    /// Whether the bytes buffered beyond the PDU last returned hold another whole PDU (or the
    /// start of one that cannot be framed: the next read reports it).
    pub fn holds_whole_pdu(&self) -> bool {
        let avail = &self.buf[self.start + self.last..];
        match frame_len(avail) {
            Ok(Some(len)) => avail.len() >= len,
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Appends what `read` gives without waiting (a non-blocking read into the buffer's spare
    /// capacity, such as `TcpStream::try_read_buf`); whether it gave anything. What it read is
    /// framed by the next call to [`next`](Self::next) or its variants. Nothing is zeroed or
    /// moved: on a host's path after every reply, the read usually finds nothing.
    pub fn fill_now(&mut self, read: impl FnOnce(&mut Vec<u8>) -> std::io::Result<usize>) -> bool {
        if self.buf.capacity() - self.buf.len() < 2048 {
            self.buf.reserve(2048);
        }
        read(&mut self.buf).is_ok_and(|n| n > 0)
    }

    /// Reads until one whole PDU is buffered and returns it.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<&[u8], ReadError> {
        self.next_within(io, None, None).await
    }

    /// Like [`next`](Self::next), but fails with [`ReadError::Idle`] when no byte arrives for
    /// `idle`: a slow sender is not idle, a silent one is.
    pub async fn next_idle<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        idle: std::time::Duration,
    ) -> Result<&[u8], ReadError> {
        self.next_within(io, Some(idle), None).await
    }

    /// Like [`next_idle`](Self::next_idle), and the PDU must also be whole within
    /// `deadlines.pdu` of its first byte (bytes already buffered count from now).
    pub async fn next_within_deadlines<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        deadlines: Deadlines,
    ) -> Result<&[u8], ReadError> {
        self.next_within(io, Some(deadlines.idle), Some(deadlines.pdu))
            .await
    }

    async fn next_within<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        idle: Option<Duration>,
        pdu_limit: Option<Duration>,
    ) -> Result<&[u8], ReadError> {
        self.start += self.last;
        self.last = 0;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        // When the PDU's first byte was seen (the clock starts with the first byte, so the
        // silence between PDUs is the idle limit's alone).
        let mut begun: Option<Instant> = None;
        loop {
            let avail = &self.buf[self.start..];
            if let Some(len) = frame_len(avail).map_err(ReadError::NotRpc)? {
                if len > self.max {
                    return Err(ReadError::TooLarge {
                        len,
                        limit: self.max,
                    });
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
            // Read into spare capacity: nothing to zero before the read, nothing to cut after.
            self.buf.reserve(2048);
            let now = (idle.is_some() || pdu_limit.is_some()).then(Instant::now);
            if begun.is_none() && !self.buf[self.start..].is_empty() {
                begun = now;
            }
            // The wait ends at the idle limit, or sooner at the PDU's deadline.
            let wait = now.and_then(|now| match (idle, begun.zip(pdu_limit)) {
                (None, None) => None,
                (Some(idle), None) => Some((now + idle, ReadError::Idle(idle))),
                (idle, Some((begun, limit))) => match idle {
                    Some(idle) if now + idle < begun + limit => {
                        Some((now + idle, ReadError::Idle(idle)))
                    }
                    _ => Some((begun + limit, ReadError::Slow(limit))),
                },
            });
            let read = io.read_buf(&mut self.buf);
            let n = match wait {
                Some((at, error)) => {
                    let timer = self.timer.get_or_insert_with(LazyTimer::new);
                    timer.set(at);
                    let n = tokio::select! {
                        biased;
                        n = read => Some(n),
                        () = timer.expired() => None,
                    };
                    n.ok_or(error)?
                }
                None => read.await,
            }?;
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
