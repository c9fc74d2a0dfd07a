//! What a restartable node writes down at each step, and how its successor
//! reads it back: the node's [`Checkpoint`] travels with its outputs, as
//! the progress record of the ring transaction that publishes them (see
//! `RingWriter::commit`), so that the outputs a process wrote and how far
//! it had read its inputs are never out of step. A successor finds the
//! last step whose outputs consumers saw, re-reads its inputs from there,
//! and writes nothing twice (`docs/RECOVERY.md` has the whole story).

use clusterduck_transport::{AttachError, ProcessStamp, RingName, RingReader, RingWriter};

use crate::body::Resumed;
use crate::Seq;

/// Words of a checkpoint before its inputs' positions.
const FIXED: usize = 6;

/// The most inputs a restartable node may read: two positions each in a
/// ring's progress record.
pub(crate) const MAX_INPUTS: usize = (RingWriter::MAX_PROGRESS - FIXED) / 2;

/// A progress record's words.
pub(crate) type Words = [u64; RingWriter::MAX_PROGRESS];

/// A node's last step, as its output ring recorded it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Values the node had emitted: its next output's number (the debugger
    /// drops outputs it has by number).
    pub(crate) emitted: u64,
    /// A spout's last id sent; a strictly sequenced worker's next id due
    /// (`Seq::MAX` for other workers).
    pub(crate) seq: Seq,
    /// A spout: whether its ids only went up.
    pub(crate) rising: bool,
    /// Values the node's restarted processes read again and processed
    /// again (their outputs had not been published), so far.
    pub(crate) replayed: u64,
    /// Values they found done with already and dropped (a spout's: its
    /// sends of what was sent), so far.
    pub(crate) skipped: u64,
    /// A bundled worker in no order's: the tag of its last step in its
    /// journal (see `run::journal`).
    pub(crate) step: u64,
    /// Per input: below `done` every frame is done with (processed, and its
    /// outputs written before this step); below `read`, frames had been
    /// read.
    pub(crate) inputs: Vec<Position>,
}

/// Where a node stood in one input ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) done: u64,
    pub(crate) read: u64,
}

impl Checkpoint {
    /// The words of the progress record, into `words`; returns how many.
    /// (At every step of a restartable node: plain stores, no allocation.)
    #[inline]
    pub(crate) fn encode(&self, words: &mut Words) -> usize {
        words[..FIXED].copy_from_slice(&[
            self.emitted,
            self.seq,
            u64::from(self.rising),
            self.replayed,
            self.skipped,
            self.step,
        ]);
        for (at, p) in words[FIXED..].chunks_exact_mut(2).zip(&self.inputs) {
            at.copy_from_slice(&[p.done, p.read]);
        }
        FIXED + 2 * self.inputs.len()
    }

    /// The checkpoint of a progress record, `None` if it is not one (of
    /// another layout, or with `inputs` inputs missing).
    pub(crate) fn decode(words: &[u64], inputs: usize) -> Option<Self> {
        if words.len() != FIXED + 2 * inputs {
            return None;
        }
        Some(Self {
            emitted: words[0],
            seq: words[1],
            rising: words[2] != 0,
            replayed: words[3],
            skipped: words[4],
            step: words[5],
            inputs: words[FIXED..]
                .chunks_exact(2)
                .map(|p| Position {
                    done: p[0],
                    read: p[1],
                })
                .collect(),
        })
    }
}

/// A spout's last step: its last record, and the ids of the sends
/// published after it (see `RingWriter::progress_and_after`). `None` if it
/// sent nothing and recorded nothing.
pub(crate) fn after_sends(record: Option<Checkpoint>, after: &[Seq]) -> Option<Checkpoint> {
    if record.is_none() && after.is_empty() {
        return None;
    }
    let mut c = record.unwrap_or(Checkpoint {
        rising: true,
        ..Checkpoint::default()
    });
    let mut ids = SentIds::after(Some(&c));
    for seq in after {
        ids.sent(*seq);
    }
    c.emitted += after.len() as u64;
    c.seq = ids.last.unwrap_or(c.seq);
    c.rising = ids.rising;
    Some(c)
}

/// A restarted spout's filter of what it sends again (see [`Resumed`]).
#[derive(Debug)]
pub(crate) struct Resend {
    /// What the dead processes sent.
    before: Checkpoint,
    /// Sends of this process so far.
    sends: u64,
    /// The spout took the resume in hand: nothing is dropped by count.
    resumed_by_spout: bool,
}

impl Resend {
    pub(crate) fn new(before: Checkpoint) -> Self {
        Self {
            before,
            sends: 0,
            resumed_by_spout: false,
        }
    }

    /// What the spout is told when it asks; from then on nothing is dropped
    /// by count.
    pub(crate) fn resume(&mut self) -> Resumed {
        self.resumed_by_spout = true;
        Resumed {
            sent: self.before.emitted,
            last_seq: (self.before.emitted > 0).then_some(self.before.seq),
        }
    }

    /// Whether the send of `seq` repeats one the dead processes made.
    pub(crate) fn is_resent(&mut self, seq: Seq) -> bool {
        self.sends += 1;
        if self.before.emitted == 0 {
            return false;
        }
        if self.before.rising {
            return seq <= self.before.seq;
        }
        !self.resumed_by_spout && self.sends <= self.before.emitted
    }
}

/// A spout's ids as they go: its checkpoint's `seq` and `rising`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SentIds {
    pub(crate) last: Option<Seq>,
    pub(crate) rising: bool,
}

impl SentIds {
    /// Where the dead processes left them.
    pub(crate) fn after(before: Option<&Checkpoint>) -> Self {
        match before {
            Some(c) if c.emitted > 0 => Self {
                last: Some(c.seq),
                rising: c.rising,
            },
            _ => Self {
                last: None,
                rising: true,
            },
        }
    }

    /// Notes a send of `seq`.
    pub(crate) fn sent(&mut self, seq: Seq) {
        if let Some(last) = self.last {
            self.rising &= seq > last;
        }
        self.last = Some(seq);
    }
}

/// A reader of `name` in the slot of the newest of `predecessors` that
/// held one, or a new one if none did.
pub(crate) fn take_over_or_attach(
    name: &RingName,
    predecessors: &[ProcessStamp],
) -> Result<RingReader, AttachError> {
    for p in predecessors {
        match RingReader::take_over(name, *p) {
            // It died before it took its own predecessor's slot.
            Err(AttachError::NoSuchReader { .. }) => continue,
            taken => return taken,
        }
    }
    RingReader::attach(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_reads_back_as_written() {
        let c = Checkpoint {
            emitted: 7,
            seq: 42,
            rising: true,
            replayed: 3,
            skipped: 2,
            step: 11,
            inputs: vec![
                Position { done: 8, read: 16 },
                Position { done: 0, read: 4 },
            ],
        };
        let mut words = [0; RingWriter::MAX_PROGRESS];
        let len = c.encode(&mut words);
        assert_eq!(words[..len], [7, 42, 1, 3, 2, 11, 8, 16, 0, 4]);
        assert_eq!(Checkpoint::decode(&words[..len], 2), Some(c));
        assert_eq!(
            Checkpoint::decode(&words[..len], 1),
            None,
            "another node's layout"
        );
        const { assert!(MAX_INPUTS * 2 + FIXED <= RingWriter::MAX_PROGRESS) };
    }

    #[test]
    fn a_spouts_sends_after_its_record_are_counted_in() {
        let record = Checkpoint {
            emitted: 3,
            seq: 9,
            rising: true,
            ..Checkpoint::default()
        };
        let after = after_sends(Some(record.clone()), &[10, 12]).unwrap();
        assert_eq!((after.emitted, after.seq, after.rising), (5, 12, true));
        let after = after_sends(Some(record), &[10, 4]).unwrap();
        assert_eq!((after.emitted, after.seq, after.rising), (5, 4, false));
        let fresh = after_sends(None, &[7]).unwrap();
        assert_eq!((fresh.emitted, fresh.seq, fresh.rising), (1, 7, true));
        assert_eq!(after_sends(None, &[]), None);
    }

    #[test]
    fn rising_ids_are_dropped_up_to_the_last_sent() {
        let mut ids = SentIds::after(None);
        for seq in [1, 2, 5] {
            ids.sent(seq);
        }
        assert!(ids.rising);
        let before = Checkpoint {
            emitted: 3,
            seq: ids.last.unwrap(),
            rising: ids.rising,
            ..Checkpoint::default()
        };
        let mut resend = Resend::new(before);
        let dropped: Vec<bool> = [1, 2, 5, 6, 7].map(|s| resend.is_resent(s)).to_vec();
        assert_eq!(dropped, [true, true, true, false, false]);
        // A spout that resumes itself is not dropped by count, only by id.
        assert_eq!(
            resend.resume(),
            Resumed {
                sent: 3,
                last_seq: Some(5)
            }
        );
        assert!(resend.is_resent(4));
    }

    #[test]
    fn other_ids_are_dropped_by_count_unless_the_spout_resumes() {
        let mut ids = SentIds::after(None);
        for seq in [3, 1, 2] {
            ids.sent(seq);
        }
        assert!(!ids.rising);
        let before = Checkpoint {
            emitted: 3,
            seq: 2,
            rising: false,
            ..Checkpoint::default()
        };
        let mut replayed = Resend::new(before.clone());
        let dropped: Vec<bool> = [3, 1, 2, 0].map(|s| replayed.is_resent(s)).to_vec();
        assert_eq!(dropped, [true, true, true, false]);
        let mut resumed = Resend::new(before);
        assert_eq!(resumed.resume().sent, 3);
        assert!(
            !resumed.is_resent(0),
            "the spout goes on after what it sent"
        );
        // A first run drops nothing.
        let mut first = Resend::new(Checkpoint::default());
        assert!(!first.is_resent(0));
        assert_eq!(first.resume().last_seq, None);
    }
}
