//! A fast hasher for sequence ids, which are integers chosen by spouts:
//! often dense, sometimes hashes already. SipHash's defence against chosen
//! keys is not needed for a table whose size is bounded.

use std::hash::Hasher;

/// Fibonacci hashing of one `u64`: a multiply by 2^64 / φ, which mixes
/// every bit of the id into the high bits of the product, rotated so that
/// the best-mixed bits are the low ones, where the table takes its bucket
/// index (the product's low bits only see the id's low bits: ids that
/// differ only above bit 20, as with `camera << 32 | frame`, would share
/// one bucket).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Ids are hashed with `write_u64`; other keys fold in a word at a
        // time, the same way.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn hash(words: &[u64]) -> u64 {
        let mut h = SeqHasher::default();
        for w in words {
            h.write_u64(*w);
        }
        h.finish()
    }

    fn hash_bytes(bytes: &[u8]) -> u64 {
        let mut h = SeqHasher::default();
        h.write(bytes);
        h.finish()
    }

    #[test]
    fn dense_and_strided_ids_hash_apart_and_fill_the_low_bits() {
        for stride in [1u64, 3, 1 << 20, 1 << 32] {
            let hashes: Vec<u64> = (0..4096).map(|i| hash(&[i * stride])).collect();
            let distinct: HashSet<u64> = hashes.iter().copied().collect();
            assert_eq!(distinct.len(), 4096, "stride {stride}");
            // The table's bucket index is in the low bits; its tag in the top 7.
            let low: HashSet<u64> = hashes.iter().map(|h| h & 0xfff).collect();
            let top: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
            assert!(
                low.len() > 1024,
                "stride {stride}: {} low patterns",
                low.len()
            );
            assert!(
                top.len() >= 32,
                "stride {stride}: {} top patterns",
                top.len()
            );
        }
    }

    #[test]
    fn words_after_the_first_still_count() {
        // A second word changes the hash, whatever the first left behind.
        let hashes: HashSet<u64> = (0..4096).map(|y| hash(&[1, y])).collect();
        assert_eq!(hashes.len(), 4096);
        let mut bytes = [0u8; 16];
        bytes[0] = 1;
        let hashes: HashSet<u64> = (0..4096u64)
            .map(|y| {
                bytes[8..].copy_from_slice(&y.to_le_bytes());
                hash_bytes(&bytes)
            })
            .collect();
        assert_eq!(hashes.len(), 4096, "bytes fold in a word at a time");
        assert_eq!(hash_bytes(&7u64.to_le_bytes()), hash(&[7]));
    }
}
