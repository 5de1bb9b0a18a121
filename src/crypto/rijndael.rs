//! Rijndael with arbitrary 32-bit-multiple key lengths and KMS's key-schedule tweaks, built on the
//! `aes` crate's hazmat round functions (AES-NI where the CPU has it). No hand-written rounds:
//! the schedule is expanded here, the rounds are the crate's.

use aes::Block;
use aes::hazmat::{
    Block8, cipher_round, equiv_inv_cipher_round, equiv_inv_cipher_round_par, inv_mix_columns,
    mix_columns,
};

/// Blocks the parallel hazmat round processes per call.
const PAR: usize = 8;

/// Most rounds Rijndael defines (Nk = 8). KMS needs 11 at most (the 160-bit V4 key), but the
/// standard key sizes keep the schedule testable against FIPS 197's vectors.
const MAX_ROUNDS: usize = 14;

/// An expanded key: encryption round keys, and the matching decryption keys of the equivalent
/// inverse cipher (FIPS 197 section 5.3.5).
#[derive(Clone)]
pub struct Rijndael {
    rounds: usize,
    /// Round keys 0..=rounds, as the standard key expansion (plus any tweak) gives them.
    enc: [Block; MAX_ROUNDS + 1],
    /// `MixColumns` of the last round key, so one hazmat round plus `InvMixColumns` performs
    /// the final (MixColumns-free) encryption round.
    enc_last_mixed: Block,
    /// `InvMixColumns` of each round key, for the equivalent inverse cipher.
    dec: [Block; MAX_ROUNDS + 1],
    /// `dec`, each key repeated for the eight-block round: CBC decryption is parallel, and one
    /// call per round for eight blocks costs far less than eight calls.
    dec8: [Block8; MAX_ROUNDS + 1],
}

impl core::fmt::Debug for Rijndael {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Round keys are protocol constants, not secrets, but they are noise in a debug dump.
        write!(f, "Rijndael {{ rounds: {} }}", self.rounds)
    }
}

/// The S-box, obtained from the crate's round: on a block whose 16 bytes are all `b`,
/// ShiftRows changes nothing and MixColumns maps each column (s,s,s,s) to itself (2⊕3⊕1⊕1 = 1),
/// so one round with a zero key leaves S(b) in every byte.
fn sub_byte(b: u8) -> u8 {
    let mut block = Block::from([b; 16]);
    cipher_round(&mut block, &Block::default());
    block[0]
}

/// Multiplication by x in GF(2^8) with the AES polynomial, for the round constants.
const fn xtime(b: u8) -> u8 {
    (b << 1) ^ if b & 0x80 != 0 { 0x1b } else { 0 }
}

fn xor_into(state: &mut Block, key: &Block) {
    for (s, k) in state.iter_mut().zip(key.iter()) {
        *s ^= k;
    }
}

impl Rijndael {
    /// Expands `key` (16, 20, 24, 28 or 32 bytes) with the standard Rijndael schedule, then
    /// XORs each `(byte offset into the schedule, value)` of `tweaks` into it.
    ///
    /// # Panics
    /// On a key length Rijndael does not define, or a tweak outside the schedule: both are
    /// programming errors with the crate's fixed keys, never input-dependent.
    pub fn new(key: &[u8], tweaks: &[(usize, u8)]) -> Rijndael {
        assert!(
            key.len().is_multiple_of(4) && (16..=32).contains(&key.len()),
            "Rijndael key length"
        );
        let nk = key.len() / 4;
        let rounds = nk + 6;
        assert!(rounds <= MAX_ROUNDS, "key needs more rounds than supported");
        let words = 4 * (rounds + 1);
        let mut w = vec![[0u8; 4]; words];
        for (i, chunk) in key.chunks_exact(4).enumerate() {
            w[i].copy_from_slice(chunk);
        }
        let mut rcon = 1u8;
        for i in nk..words {
            let mut t = w[i - 1];
            if i % nk == 0 {
                t = [
                    sub_byte(t[1]) ^ rcon,
                    sub_byte(t[2]),
                    sub_byte(t[3]),
                    sub_byte(t[0]),
                ];
                rcon = xtime(rcon);
            } else if nk > 6 && i % nk == 4 {
                t = t.map(sub_byte);
            }
            w[i] = core::array::from_fn(|j| w[i - nk][j] ^ t[j]);
        }
        let mut bytes: Vec<u8> = w.into_iter().flatten().collect();
        for &(at, v) in tweaks {
            bytes[at] ^= v;
        }
        let mut enc = [Block::default(); MAX_ROUNDS + 1];
        for (k, chunk) in enc.iter_mut().zip(bytes.chunks_exact(16)) {
            k.copy_from_slice(chunk);
        }
        let mut dec = enc;
        for k in &mut dec[..=rounds] {
            inv_mix_columns(k);
        }
        let mut enc_last_mixed = enc[rounds];
        mix_columns(&mut enc_last_mixed);
        let dec8 = dec.map(|k| Block8::from([k; PAR]));
        Rijndael {
            rounds,
            enc,
            enc_last_mixed,
            dec,
            dec8,
        }
    }

    /// Number of rounds.
    pub fn rounds(&self) -> usize {
        self.rounds
    }

    /// Round key `i` (for known-answer tests of the schedule).
    pub fn round_key(&self, i: usize) -> [u8; 16] {
        self.enc[i].into()
    }

    /// Encrypts one block in place. Always inlined: CBC encryption calls it once per block,
    /// and whether LLVM inlined it moved the count by 900 instructions per activation from one
    /// build to the next (callgrind).
    #[inline(always)]
    pub fn encrypt_block(&self, block: &mut [u8; 16]) {
        let mut s = Block::from(*block);
        xor_into(&mut s, &self.enc[0]);
        for k in &self.enc[1..self.rounds] {
            cipher_round(&mut s, k);
        }
        // Final round without MixColumns: MC(SR(SB(s))) ⊕ MC(k) = MC(SR(SB(s)) ⊕ k), undone.
        cipher_round(&mut s, &self.enc_last_mixed);
        inv_mix_columns(&mut s);
        *block = s.into();
    }

    /// Decrypts one block in place.
    #[inline]
    pub fn decrypt_block(&self, block: &mut [u8; 16]) {
        let mut s = Block::from(*block);
        xor_into(&mut s, &self.enc[self.rounds]);
        for k in self.dec[1..self.rounds].iter().rev() {
            equiv_inv_cipher_round(&mut s, k);
        }
        // Final round without InvMixColumns: IMC(x) ⊕ IMC(k0) = IMC(x ⊕ k0), undone.
        equiv_inv_cipher_round(&mut s, &self.dec[0]);
        mix_columns(&mut s);
        *block = s.into();
    }

    /// CBC-encrypts `data` (a whole number of blocks) in place.
    pub fn cbc_encrypt(&self, iv: &[u8; 16], data: &mut [u8]) {
        debug_assert_eq!(data.len() % 16, 0);
        let mut chain = *iv;
        for chunk in data.chunks_exact_mut(16) {
            let mut b: [u8; 16] = core::array::from_fn(|i| chunk[i] ^ chain[i]);
            self.encrypt_block(&mut b);
            chunk.copy_from_slice(&b);
            chain = b;
        }
    }

    /// Decrypts eight blocks at once.
    fn decrypt8(&self, blocks: &mut Block8) {
        for b in blocks.iter_mut() {
            xor_into(b, &self.enc[self.rounds]);
        }
        for k in self.dec8[1..self.rounds].iter().rev() {
            equiv_inv_cipher_round_par(blocks, k);
        }
        equiv_inv_cipher_round_par(blocks, &self.dec8[0]);
        for b in blocks.iter_mut() {
            mix_columns(b);
        }
    }

    /// CBC-decrypts `data` (a whole number of blocks) in place.
    pub fn cbc_decrypt(&self, iv: &[u8; 16], data: &mut [u8]) {
        debug_assert_eq!(data.len() % 16, 0);
        let mut chain = *iv;
        let mut groups = data.chunks_exact_mut(16 * PAR);
        for group in &mut groups {
            let mut blocks = Block8::default();
            for (b, c) in blocks.iter_mut().zip(group.chunks_exact(16)) {
                b.copy_from_slice(c);
            }
            self.decrypt8(&mut blocks);
            for (b, c) in blocks.iter().zip(group.chunks_exact_mut(16)) {
                let cipher: [u8; 16] = core::array::from_fn(|i| c[i]);
                for i in 0..16 {
                    c[i] = b[i] ^ chain[i];
                }
                chain = cipher;
            }
        }
        for chunk in groups.into_remainder().chunks_exact_mut(16) {
            let mut b = [0u8; 16];
            b.copy_from_slice(chunk);
            let next = b;
            self.decrypt_block(&mut b);
            for i in 0..16 {
                chunk[i] = b[i] ^ chain[i];
            }
            chain = next;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};

    fn h16(s: &str) -> [u8; 16] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn test_fips197_aes128() {
        // FIPS 197 appendix C.1.
        let r = Rijndael::new(&h16("000102030405060708090a0b0c0d0e0f"), &[]);
        let mut b = h16("00112233445566778899aabbccddeeff");
        r.encrypt_block(&mut b);
        assert_eq!(hex::encode(b), "69c4e0d86a7b0430d8cdb78070b4c55a");
        r.decrypt_block(&mut b);
        assert_eq!(hex::encode(b), "00112233445566778899aabbccddeeff");
    }

    #[test]
    fn test_fips197_other_key_sizes() {
        // FIPS 197 appendix C.2 and C.3: Nk = 6 and Nk = 8 (with its extra SubWord step).
        let plain = h16("00112233445566778899aabbccddeeff");
        for (key, rounds, expected) in [
            (
                "000102030405060708090a0b0c0d0e0f1011121314151617",
                12,
                "dda97ca4864cdfe06eaf70a0ec0d7191",
            ),
            (
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
                14,
                "8ea2b7ca516745bfeafc49904b496089",
            ),
        ] {
            let r = Rijndael::new(&hex::decode(key).unwrap(), &[]);
            assert_eq!(r.rounds(), rounds);
            let mut b = plain;
            r.encrypt_block(&mut b);
            assert_eq!(hex::encode(b), expected);
            r.decrypt_block(&mut b);
            assert_eq!(b, plain);
        }
    }

    #[test]
    fn test_matches_aes_crate_on_random_blocks() {
        // The crate's own AES-128 is an independent implementation of the same schedule.
        let key = h16("cd7e796f2ab25dcb55ffc8ef8364c470");
        let ours = Rijndael::new(&key, &[]);
        let theirs = aes::Aes128::new(&key.into());
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..200 {
            let mut b = [0u8; 16];
            for byte in &mut b {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
            let mut mine = b;
            ours.encrypt_block(&mut mine);
            let mut blk = aes::Block::from(b);
            theirs.encrypt_block(&mut blk);
            assert_eq!(mine, <[u8; 16]>::from(blk));
            ours.decrypt_block(&mut mine);
            theirs.decrypt_block(&mut blk);
            assert_eq!(mine, b);
        }
    }

    #[test]
    fn test_cbc_decrypt_every_length_matches_block_by_block() {
        // Whole eight-block groups, a short last group, and none at all.
        let r = Rijndael::new(&[3u8; 16], &[(64, 0x73)]);
        let iv = [5u8; 16];
        for blocks in 0..=17usize {
            let plain: Vec<u8> = (0..16 * blocks).map(|i| (i * 7) as u8).collect();
            let mut data = plain.clone();
            r.cbc_encrypt(&iv, &mut data);
            let mut chain = iv;
            let mut by_block = Vec::new();
            for c in data.chunks_exact(16) {
                let mut b: [u8; 16] = c.try_into().unwrap();
                r.decrypt_block(&mut b);
                by_block.extend(b.iter().zip(&chain).map(|(x, y)| x ^ y));
                chain = c.try_into().unwrap();
            }
            assert_eq!(by_block, plain, "{blocks} blocks, block by block");
            r.cbc_decrypt(&iv, &mut data);
            assert_eq!(data, plain, "{blocks} blocks");
        }
    }

    #[test]
    fn test_cbc_roundtrip() {
        let r = Rijndael::new(&[7u8; 20], &[(64, 0x73)]);
        let iv = [9u8; 16];
        let plain: Vec<u8> = (0..=255u8).chain(0..48).collect();
        let mut data = plain.clone();
        r.cbc_encrypt(&iv, &mut data);
        assert_ne!(data, plain);
        // Compare with block-by-block CBC so the eight-block path is checked independently.
        let mut chain = iv;
        for (i, c) in data.chunks_exact(16).enumerate() {
            let mut b: [u8; 16] = c.try_into().unwrap();
            r.decrypt_block(&mut b);
            let p: Vec<u8> = b.iter().zip(&chain).map(|(x, y)| x ^ y).collect();
            assert_eq!(p, plain[16 * i..16 * i + 16]);
            chain = c.try_into().unwrap();
        }
        r.cbc_decrypt(&iv, &mut data);
        assert_eq!(data, plain);
    }
}
