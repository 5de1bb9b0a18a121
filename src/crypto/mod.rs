//! The KMS ciphers, MAC, hash and HMAC: Rijndael with KMS's fixed keys and key schedules (from
//! `aes::hazmat` rounds), PKCS#7 padding, SHA-256 and HMAC-SHA256.
//!
//! All keys are fixed by the protocol, so every key schedule is computed once, on first use.

pub mod rijndael;
pub mod v4;
pub mod v5;
pub mod v6;

use sha2::{Digest, Sha256};

/// AES block size.
pub const BLOCK: usize = 16;

/// Why a ciphertext did not decrypt to well-padded plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PadError {
    /// The ciphertext is not a whole number of blocks.
    #[error("ciphertext of {len} bytes is not a multiple of 16")]
    NotBlockAligned {
        /// Its length.
        len: usize,
    },
    /// The last byte is not a pad length from 1 to 16.
    #[error("pad length byte is {value}, not 1..=16")]
    BadLength {
        /// The last plaintext byte.
        value: u8,
    },
    /// Not every pad byte equals the pad length.
    #[error("pad byte at offset {offset} is {value:#04x}, expected {expected:#04x}")]
    BadByte {
        /// Offset of the wrong byte within the plaintext.
        offset: usize,
        /// Its value.
        value: u8,
        /// The pad length.
        expected: u8,
    },
}

/// Appends PKCS#7 padding (1 to 16 bytes) so that `buf[from..]` is a whole number of blocks.
pub fn pad(buf: &mut Vec<u8>, from: usize) {
    let n = BLOCK - (buf.len() - from) % BLOCK;
    buf.resize(buf.len() + n, n as u8);
}

/// Length of `plain` without its PKCS#7 padding, checking every pad byte.
pub fn unpadded_len(plain: &[u8]) -> Result<usize, PadError> {
    let Some(&last) = plain.last() else {
        return Err(PadError::NotBlockAligned { len: 0 });
    };
    if last == 0 || usize::from(last) > BLOCK || usize::from(last) > plain.len() {
        return Err(PadError::BadLength { value: last });
    }
    let start = plain.len() - usize::from(last);
    for (i, &b) in plain[start..].iter().enumerate() {
        if b != last {
            return Err(PadError::BadByte {
                offset: start + i,
                value: b,
                expected: last,
            });
        }
    }
    Ok(start)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// XOR of two blocks.
pub fn xor16(a: &[u8; 16], b: &[u8; 16]) -> [u8; 16] {
    core::array::from_fn(|i| a[i] ^ b[i])
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_pad_unpad() {
        for len in 0..40 {
            let mut v = vec![0xaa; len];
            pad(&mut v, 0);
            assert_eq!(v.len() % 16, 0);
            assert!(v.len() > len && v.len() <= len + 16);
            assert_eq!(unpadded_len(&v), Ok(len));
        }
    }

    #[test]
    fn test_unpad_errors() {
        assert_eq!(
            unpadded_len(&[1, 2, 3, 0]),
            Err(PadError::BadLength { value: 0 })
        );
        assert_eq!(
            unpadded_len(&[1, 2, 3, 17]),
            Err(PadError::BadLength { value: 17 })
        );
        assert_eq!(
            unpadded_len(&[9, 2, 3, 3]),
            Err(PadError::BadByte {
                offset: 1,
                value: 2,
                expected: 3
            })
        );
    }

    #[test]
    fn test_sha256_known_answer() {
        // FIPS 180-2 appendix B.1.
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
