//! Little-endian read and write primitives shared by every layout, and the decode error type.

use super::Guid;

/// A decode failure: which field, at which offset, and what was wrong.
///
/// Offsets count from the start of the buffer handed to the decoder that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The buffer ended inside a field.
    #[error("truncated {field} at offset {offset}: needs {need} bytes, {have} left")]
    Truncated {
        /// The field that did not fit.
        field: &'static str,
        /// Where the field starts.
        offset: usize,
        /// Bytes the field needs.
        need: usize,
        /// Bytes that were left.
        have: usize,
    },
    /// A field holds a value the layout does not allow.
    #[error("invalid {field} at offset {offset}: {problem}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// Where the field starts.
        offset: usize,
        /// What is wrong with it, with the value seen.
        problem: String,
    },
    /// Bytes remained after a layout that must end the buffer.
    #[error("{extra} unexpected bytes after {what} at offset {offset}")]
    Trailing {
        /// The layout that should have ended the buffer.
        what: &'static str,
        /// Where the extra bytes start.
        offset: usize,
        /// How many there are.
        extra: usize,
    },
}

impl Error {
    /// Shorthand for an [`Error::Invalid`].
    pub fn invalid(field: &'static str, offset: usize, problem: impl Into<String>) -> Error {
        Error::Invalid {
            field,
            offset,
            problem: problem.into(),
        }
    }

    /// The same error with every offset moved by `base`, for errors from a nested layout.
    #[must_use]
    pub fn at(self, base: usize) -> Error {
        match self {
            Error::Truncated {
                field,
                offset,
                need,
                have,
            } => Error::Truncated {
                field,
                offset: offset + base,
                need,
                have,
            },
            Error::Invalid {
                field,
                offset,
                problem,
            } => Error::Invalid {
                field,
                offset: offset + base,
                problem,
            },
            Error::Trailing {
                what,
                offset,
                extra,
            } => Error::Trailing {
                what,
                offset: offset + base,
                extra,
            },
        }
    }

    /// The field the error names.
    pub fn field(&self) -> &'static str {
        match self {
            Error::Truncated { field, .. } | Error::Invalid { field, .. } => field,
            Error::Trailing { what, .. } => what,
        }
    }

    /// The offset the error names.
    pub fn offset(&self) -> usize {
        match self {
            Error::Truncated { offset, .. }
            | Error::Invalid { offset, .. }
            | Error::Trailing { offset, .. } => *offset,
        }
    }
}

/// Result of a decode.
pub type Result<T> = core::result::Result<T, Error>;

/// A cursor over untrusted bytes. Every read names its field so that a failure says where.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        match self.buf.get(self.pos..).and_then(|rest| rest.get(..n)) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(Error::Truncated {
                field,
                offset: self.pos,
                need: n,
                have: self.remaining(),
            }),
        }
    }

    /// Takes everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        rest
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let bytes = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Reads a little-endian u16.
    pub fn u16(&mut self, field: &'static str) -> Result<u16> {
        self.array(field).map(u16::from_le_bytes)
    }

    /// Reads a little-endian u32.
    pub fn u32(&mut self, field: &'static str) -> Result<u32> {
        self.array(field).map(u32::from_le_bytes)
    }

    /// Reads a little-endian u64.
    pub fn u64(&mut self, field: &'static str) -> Result<u64> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// Reads a GUID in wire form.
    pub fn guid(&mut self, field: &'static str) -> Result<Guid> {
        self.array(field).map(Guid)
    }

    /// Fails unless every byte was read.
    pub fn finish(&self, what: &'static str) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(Error::Trailing {
                what,
                offset: self.pos,
                extra,
            }),
        }
    }
}

/// Appends little-endian values to a growable buffer the caller reuses between messages.
pub trait Put {
    /// Appends bytes.
    fn put(&mut self, bytes: &[u8]);
    /// Appends a little-endian u16.
    fn put_u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }
    /// Appends a little-endian u32.
    fn put_u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }
    /// Appends a little-endian u64.
    fn put_u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
    /// Appends a GUID in wire form.
    fn put_guid(&mut self, g: &Guid) {
        self.put(&g.0);
    }
}

impl Put for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Reads a little-endian u16 at a fixed offset of a buffer already checked to be long enough.
pub(crate) fn le16(buf: &[u8], at: usize) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&buf[at..at + 2]);
    u16::from_le_bytes(b)
}

/// Reads a little-endian u32 at a fixed offset of a buffer already checked to be long enough.
pub(crate) fn le32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Reads a little-endian u64 at a fixed offset of a buffer already checked to be long enough.
pub(crate) fn le64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Copies a 16-byte array out of a buffer already checked to be long enough.
pub(crate) fn array16(buf: &[u8], at: usize) -> [u8; 16] {
    let mut b = [0u8; 16];
    b.copy_from_slice(&buf[at..at + 16]);
    b
}

/// Number of zero bytes that align `len` up to a multiple of `align` (a power of two).
pub const fn pad_to(len: usize, align: usize) -> usize {
    (align - (len & (align - 1))) & (align - 1)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_reader_names_field_and_offset() {
        let mut r = Reader::new(&[1, 0, 2]);
        assert_eq!(r.u16("a").unwrap(), 1);
        let err = r.u32("b").unwrap_err();
        assert_eq!(
            err,
            Error::Truncated {
                field: "b",
                offset: 2,
                need: 4,
                have: 1
            }
        );
        assert_eq!(
            err.to_string(),
            "truncated b at offset 2: needs 4 bytes, 1 left"
        );
        assert_eq!(r.u8("c").unwrap(), 2);
        r.finish("x").unwrap();
    }

    #[test]
    fn test_trailing() {
        let mut r = Reader::new(&[1, 2, 3]);
        r.u8("a").unwrap();
        assert_eq!(
            r.finish("thing"),
            Err(Error::Trailing {
                what: "thing",
                offset: 1,
                extra: 2
            })
        );
    }

    #[test]
    fn test_pad_to() {
        assert_eq!(pad_to(0, 4), 0);
        assert_eq!(pad_to(162, 4), 2);
        assert_eq!(pad_to(250, 16), 6);
        assert_eq!(pad_to(256, 16), 0);
    }
}
