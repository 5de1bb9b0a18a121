//! KMS V4 integrity: a CBC-MAC over Rijndael with a 160-bit key (11 rounds), messages padded with
//! 0x80 and zeros. Not standard CMAC: there are no subkeys, and a final pad block is always used.

use std::sync::LazyLock;

use super::rijndael::Rijndael;

/// The V4 MAC key (160 bits), a protocol constant (vlmcsd `crypto.c`, py-kms `pykms_Aes.py`).
pub const KEY: [u8; 20] = [
    0x05, 0x3D, 0x83, 0x07, 0xF9, 0xE5, 0xF0, 0x88, 0xEB, 0x5E, 0xA6, 0x68, 0x6C, 0xF0, 0x37, 0xC7,
    0xE4, 0xEF, 0xD2, 0xD6,
];

/// Length of the MAC appended to V4 requests and responses.
pub const MAC_LEN: usize = 16;

static CIPHER: LazyLock<Rijndael> = LazyLock::new(|| Rijndael::new(&KEY, &[]));

/// The expanded V4 key.
pub fn cipher() -> &'static Rijndael {
    &CIPHER
}

/// The V4 MAC of `message`.
pub fn mac(message: &[u8]) -> [u8; MAC_LEN] {
    let cipher = cipher();
    let mut state = [0u8; 16];
    let mut blocks = message.chunks_exact(16);
    for block in &mut blocks {
        for (s, m) in state.iter_mut().zip(block) {
            *s ^= m;
        }
        cipher.encrypt_block(&mut state);
    }
    // The tail (possibly empty) gets a 0x80 marker and zeros: always one more block.
    let tail = blocks.remainder();
    let mut last = [0u8; 16];
    last[..tail.len()].copy_from_slice(tail);
    last[tail.len()] = 0x80;
    for (s, m) in state.iter_mut().zip(&last) {
        *s ^= m;
    }
    cipher.encrypt_block(&mut state);
    state
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_schedule_shape() {
        assert_eq!(cipher().rounds(), 11);
        // The schedule starts with the key itself.
        assert_eq!(cipher().round_key(0), KEY[..16]);
    }

    #[test]
    fn test_mac_depends_on_every_byte() {
        let msg = [0x5au8; 236];
        let base = mac(&msg);
        for i in [0, 100, 235] {
            let mut m = msg;
            m[i] ^= 1;
            assert_ne!(mac(&m), base, "byte {i}");
        }
        // Appending the marker by hand must not collide with the implicit pad.
        let mut padded = msg.to_vec();
        padded.push(0x80);
        assert_ne!(mac(&padded), base);
    }
}
