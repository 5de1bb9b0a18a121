//! KMS V5 confidentiality: AES-128-CBC with the fixed V5 key (standard key schedule).

use std::sync::LazyLock;

use super::rijndael::Rijndael;

/// The V5 AES-128 key, a protocol constant (vlmcsd `crypto.c`, py-kms `pykms_Aes.py`).
pub const KEY: [u8; 16] = [
    0xCD, 0x7E, 0x79, 0x6F, 0x2A, 0xB2, 0x5D, 0xCB, 0x55, 0xFF, 0xC8, 0xEF, 0x83, 0x64, 0xC4, 0x70,
];

static CIPHER: LazyLock<Rijndael> = LazyLock::new(|| Rijndael::new(&KEY, &[]));

/// The expanded V5 key.
pub fn cipher() -> &'static Rijndael {
    &CIPHER
}
