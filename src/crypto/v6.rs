//! KMS V6: AES-128 with the fixed V6 key and a modified key schedule, and the response HMAC
//! (HMAC-SHA256, keyed from the time slot of the echoed client time, truncated to 16 bytes).

use std::cell::RefCell;
use std::sync::LazyLock;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::rijndael::Rijndael;
use super::sha256;

/// The V6 AES-128 key, a protocol constant (vlmcsd `crypto.c`, py-kms `pykms_Aes.py`).
pub const KEY: [u8; 16] = [
    0xA9, 0x4A, 0x41, 0x95, 0xE2, 0x01, 0x43, 0x2D, 0x9B, 0xCB, 0x46, 0x04, 0x05, 0xD8, 0x4A, 0x21,
];

/// V6's departure from AES: after the standard expansion, the first byte of round keys 4, 6
/// and 8 is XORed with these values (vlmcsd `AesInitKey`, py-kms `pykms_Aes.py`).
pub const SCHEDULE_TWEAKS: [(usize, u8); 3] = [(4 * 16, 0x73), (6 * 16, 0x09), (8 * 16, 0xE4)];

/// Time-slot constants of the HMAC key derivation (vlmcsd `kms.h` TIME_C1..C3): a FILETIME is
/// divided by C1 (about 4.11 hours in 100 ns units), then mapped by `slot * C2 + C3`.
pub const TIME_C1: u64 = 0x0000_0022_8168_89BD;
/// See [`TIME_C1`].
pub const TIME_C2: u64 = 0x0000_0020_8CBA_B5ED;
/// See [`TIME_C1`].
pub const TIME_C3: u64 = 0x3156_CD5A_C628_477A;

/// Length of the (truncated) HMAC at the end of a V6 response.
pub const HMAC_LEN: usize = 16;

static CIPHER: LazyLock<Rijndael> = LazyLock::new(|| Rijndael::new(&KEY, &SCHEDULE_TWEAKS));

/// The expanded V6 key.
pub fn cipher() -> &'static Rijndael {
    &CIPHER
}

/// The HMAC key for a response echoing `client_time` (a FILETIME). A host uses `slot_offset` 0;
/// a verifier also tries -1 and +1, which (as vlmcs computes it) add ∓C1 to the mapped slot
/// value rather than stepping to the neighbouring slot. The arithmetic wraps, as in vlmcsd and
/// py-kms.
pub fn hmac_key(client_time: u64, slot_offset: i8) -> [u8; 16] {
    let slot = (client_time / TIME_C1)
        .wrapping_mul(TIME_C2)
        .wrapping_add(TIME_C3)
        .wrapping_add((i64::from(slot_offset) as u64).wrapping_mul(TIME_C1));
    let digest = sha256(&slot.to_le_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[16..]);
    key
}

/// The V6 response HMAC of `data` under `key`: the last 16 bytes of HMAC-SHA256.
pub fn hmac(key: &[u8; 16], data: &[u8]) -> [u8; HMAC_LEN] {
    tag(keyed(key), data)
}

fn keyed(key: &[u8; 16]) -> hmac::Hmac<Sha256> {
    // A 16-byte key is always a valid HMAC key; new_from_slice only fails on impossible lengths.
    <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

fn tag(mut mac: hmac::Hmac<Sha256>, data: &[u8]) -> [u8; HMAC_LEN] {
    mac.update(data);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; HMAC_LEN];
    out.copy_from_slice(&full[16..]);
    out
}

thread_local! {
    /// The last keyed HMAC on this thread, with its time slot (client time / C1) and offset.
    /// The key changes once every C1 (about 4.11 hours) and every response in between is
    /// signed with it; deriving the key and absorbing its two pads are three of the seven
    /// SHA-256 compressions of signing or checking one response. A pure memo: same answers.
    static LAST_KEYED: RefCell<Option<(u64, i8, hmac::Hmac<Sha256>)>> = const { RefCell::new(None) };
}

/// `hmac(&hmac_key(client_time, slot_offset), data)`, the keyed state reused while the time
/// slot stays the same.
pub fn slot_hmac(client_time: u64, slot_offset: i8, data: &[u8]) -> [u8; HMAC_LEN] {
    let slot = client_time / TIME_C1;
    LAST_KEYED.with_borrow_mut(|last| {
        let mac = match last {
            Some((s, o, mac)) if *s == slot && *o == slot_offset => mac.clone(),
            _ => {
                let mac = keyed(&hmac_key(client_time, slot_offset));
                *last = Some((slot, slot_offset, mac.clone()));
                mac
            }
        };
        tag(mac, data)
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_schedule_differs_from_aes_only_where_tweaked() {
        let plain = Rijndael::new(&KEY, &[]);
        for i in 0..=10 {
            let mut expect = plain.round_key(i);
            for &(at, v) in &SCHEDULE_TWEAKS {
                if at / 16 == i {
                    expect[at % 16] ^= v;
                }
            }
            assert_eq!(cipher().round_key(i), expect, "round key {i}");
        }
    }

    #[test]
    fn test_hmac_rfc4231_case2_tail() {
        // RFC 4231 test case 2 ("Jefe"), truncated the way V6 truncates: the last 16 bytes.
        let full = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac.finalize().into_bytes()), full);
    }

    #[test]
    fn test_slot_hmac_is_hmac_under_the_slot_key() {
        let t = 134_000_000_000_000_000u64;
        let data = [0x5au8; 200];
        // Alternating slots and offsets exercise the memo's hits and misses alike.
        for time in [
            t,
            t + 1,
            t + TIME_C1,
            t,
            t + 2 * TIME_C1,
            t + 2 * TIME_C1 + 7,
        ] {
            for offset in [0i8, 0, -1, 1, 0] {
                assert_eq!(
                    slot_hmac(time, offset, &data),
                    hmac(&hmac_key(time, offset), &data),
                    "time {time} offset {offset}"
                );
            }
        }
    }

    #[test]
    fn test_slot_changes_every_c1() {
        let t = 134_000_000_000_000_000u64;
        let base = t - t % TIME_C1;
        assert_eq!(hmac_key(base, 0), hmac_key(base + TIME_C1 - 1, 0));
        assert_ne!(hmac_key(base, 0), hmac_key(base + TIME_C1, 0));
        // The tolerance moves the mapped value by C1, not to the neighbouring slot (which is C2
        // away): this is the reference client's arithmetic, kept as it is.
        assert_ne!(hmac_key(base, 1), hmac_key(base + TIME_C1, 0));
        assert_ne!(hmac_key(base, 1), hmac_key(base, 0));
        assert_ne!(hmac_key(base, -1), hmac_key(base, 1));
    }
}
