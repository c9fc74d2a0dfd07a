//! The fingerprint of a topology: what every process of a run must agree on
//! (names, edges, value types, flags) before it exchanges a byte.

use std::fmt;

use crate::graph::Graph;

/// A canonical description of a topology and its 64-bit hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    description: String,
    hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `graph`.
    pub fn of(graph: &Graph) -> Self {
        let description = graph
            .nodes()
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            hash: fnv1a(description.as_bytes()),
            description,
        }
    }

    /// The hash, stable across builds and platforms.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The canonical description the hash is taken of.
    pub fn description(&self) -> &str {
        &self.description
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x} [{}]", self.hash, self.description)
    }
}

/// 64-bit FNV-1a of `bytes`: the same in every process, build and platform
/// (fingerprints, and keys for inputs grouped by key).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
