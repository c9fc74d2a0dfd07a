//! A fast hasher for sequence ids, which are integers chosen by spouts:
//! often dense, sometimes hashes already. SipHash's defence against chosen
//! keys is not needed for a table whose size is bounded.

use std::hash::Hasher;

/// Fibonacci hashing of one `u64`: a multiply that spreads dense ids over
/// the high bits that the hash table uses.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
