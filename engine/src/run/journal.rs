//! What a restartable bundled worker in no order writes down beside its
//! steps: the frames it was done with out of ring order.
//!
//! A checkpoint says, per input, where the frames the node is done with end
//! (`done`: a ring is released in order) and how far it read (`read`). A
//! sequenced node needs no more: its next id due tells a successor which of
//! the values between the two it had processed. A node in no order
//! completes bundles as their values come, so between `done` and `read` lie
//! frames of bundles it ran (and whose outputs are in its ring) and frames
//! of bundles still waiting, in any mix. The journal names the first kind:
//! at each step, the positions done with above the done line, in a frame
//! tagged with the step's number, written before the step is committed
//! (the checkpoint holds the number of its last step). A successor offers
//! again only the frames between `done` and `read` that no valid journal
//! entry names: exactly the values of the bundles that were waiting.
//!
//! A step that was written in the journal but never committed (the process
//! died between the two) is void: its entries name frames whose bundles'
//! outputs never reached consumers. A successor voids the tags above its
//! checkpoint's (writing down which, for the next successor) and numbers
//! its own steps above every tag in the journal.
//!
//! The journal is a ring of the node's own, read by the node itself: it
//! releases a frame once the done lines of a published checkpoint passed
//! every position it names. Its size bounds what it must hold: each entry
//! names a frame still held in an input ring, and frames held are at most
//! a ring's capacity per input; see [`Journal::capacity`].

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use clusterduck_transport::{
    AttachError, FrameKind, ProcessStamp, ReopenError, RingName, RingReader, RingWriter,
};

use super::recovery::{Checkpoint, Position};

/// The first word of a void record: `[VOID, from, to]` voids tags
/// `from..=to`.
const VOID: u64 = u64::MAX;

/// The frames done with above the done lines at a restart, per input: the
/// values there a successor does not offer again.
#[derive(Debug, Default)]
pub(crate) struct DoneAbove(Vec<HashSet<u64>>);

impl DoneAbove {
    /// Whether the frame at `pos` of input `u` was done with.
    pub(crate) fn contains(&self, u: usize, pos: u64) -> bool {
        self.0.get(u).is_some_and(|s| s.contains(&pos))
    }
}

/// A node's journal: its ring, and the frames in it not released.
pub(crate) struct Journal {
    writer: RingWriter,
    reader: RingReader,
    /// Per frame not released: where it ends, and per input the highest
    /// position it names (`None`: none; a void record names none).
    kept: VecDeque<(u64, Vec<Option<u64>>)>,
    /// The tag of the last step written.
    tag: u64,
    inputs: usize,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("tag", &self.tag)
            .field("kept", &self.kept.len())
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// The capacity a journal needs for `inputs` input rings of
    /// `ring_bytes` each: an entry (16 bytes) per frame done out of order,
    /// each frame at least 32 bytes; entries outlive their frames' release
    /// by at most another ring's worth (the done line passed them, the
    /// frame with them waits for its oldest), and each step adds a header.
    pub(crate) fn capacity(inputs: usize, ring_bytes: usize) -> usize {
        (2 * inputs * ring_bytes).max(64 * 1024)
    }

    /// The journal `name` of a node with `inputs` inputs: a new one
    /// (owned by `owner`), or, for a restarted node (`before`, its last
    /// checkpoint, and the processes that ran it before, the newest first),
    /// the one its predecessors wrote, read back: the frames it names as
    /// done above `before`'s done lines are returned.
    pub(crate) fn open(
        name: &RingName,
        (inputs, capacity, owner): (usize, usize, ProcessStamp),
        restart: Option<(&Checkpoint, &[ProcessStamp])>,
    ) -> Result<(Journal, DoneAbove), String> {
        let reopened = match restart {
            None => None,
            Some((before, predecessors)) => match RingWriter::reopen(name) {
                Ok(writer) => Some((writer, before, predecessors)),
                // Its predecessors died before they made it: they had
                // committed no step.
                Err(ReopenError::Attach(AttachError::Io { source, .. }))
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    None
                }
                Err(e) => return Err(format!("reopening its journal: {e}")),
            },
        };
        let Some((writer, before, predecessors)) = reopened else {
            let mut writer =
                RingWriter::create_owned(name, capacity, owner).map_err(|e| e.to_string())?;
            writer.expect_restarts();
            writer.keep_dead_readers();
            let reader = RingReader::attach(name).map_err(|e| e.to_string())?;
            let journal = Journal::with(writer, reader, inputs);
            return Ok((journal, DoneAbove(vec![HashSet::new(); inputs])));
        };
        let reader = super::recovery::take_over_or_attach(name, predecessors)
            .map_err(|e| format!("taking over its journal: {e}"))?;
        let mut journal = Journal::with(writer, reader, inputs);
        let done = journal.read_back(before)?;
        Ok((journal, done))
    }

    /// The journal written by `writer`, read by `reader` (nothing kept
    /// yet), of a node with `inputs` inputs.
    fn with(writer: RingWriter, reader: RingReader, inputs: usize) -> Self {
        Journal {
            writer,
            reader,
            kept: VecDeque::new(),
            tag: 0,
            inputs,
            buf: Vec::new(),
        }
    }

    /// Reads the frames kept back, and goes on after them (see
    /// [`read_back`]); voids the tags written after `before`'s step.
    fn read_back(&mut self, before: &Checkpoint) -> Result<DoneAbove, String> {
        let mut frames: Vec<(u64, Vec<u64>, u64)> = Vec::new();
        let mut at = self.reader.cursor();
        let end = self
            .reader
            .published_past(at, Duration::ZERO)
            .map_err(|e| format!("reading its journal: {e}"))?
            .unwrap_or(at);
        while at < end {
            let (frame, after) = self
                .reader
                .frame_at(at)
                .map_err(|e| format!("reading its journal at {at}: {e}"))?;
            if frame.kind() != FrameKind::Data || frame.bytes().len() % 8 != 0 {
                return Err(format!("its journal holds a bad frame at {at}"));
            }
            let words = frame
                .bytes()
                .chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
                .collect();
            frames.push((frame.seq(), words, after));
            at = after;
        }
        let back = read_back(&frames, before, self.inputs)?;
        self.kept = back.kept;
        self.tag = back.top;
        if back.top > before.step {
            // Steps written and never committed: void for every successor.
            let void = [VOID, before.step + 1, back.top];
            self.write(back.top, &void, vec![None; self.inputs])?;
        }
        Ok(back.done)
    }

    /// Writes down the frames done with out of order in the step about to
    /// be committed (`(input, position)`, none: no frame); returns the
    /// step's tag, for its checkpoint.
    pub(crate) fn step(&mut self, entries: &[(usize, u64)]) -> Result<u64, String> {
        self.tag += 1;
        if entries.is_empty() {
            return Ok(self.tag);
        }
        let mut words = Vec::with_capacity(2 * entries.len());
        let mut highest = vec![None; self.inputs];
        for &(u, pos) in entries {
            words.extend([u as u64, pos]);
            highest[u] = highest[u].max(Some(pos));
        }
        self.write(self.tag, &words, highest)?;
        Ok(self.tag)
    }

    fn write(&mut self, tag: u64, words: &[u64], highest: Vec<Option<u64>>) -> Result<(), String> {
        self.buf.clear();
        for w in words {
            self.buf.extend_from_slice(&w.to_le_bytes());
        }
        // Only this node frees its journal: a write that waited for room
        // would wait for ever. Its size makes this not happen; if it did,
        // the node says so.
        let needs = 16 + self.buf.len().div_ceil(16) * 16;
        if self.writer.free_space() < needs {
            return Err(format!(
                "its journal is full ({} bytes; a step needs {needs} more)",
                self.writer.capacity()
            ));
        }
        self.writer
            .write_bytes(tag, &self.buf)
            .map_err(|e| format!("writing its journal: {e}"))?;
        self.writer.flush();
        self.kept.push_back((self.writer.written(), highest));
        Ok(())
    }

    /// Releases the frames every position of which lies below the done
    /// lines of `inputs` (a published checkpoint's), in order.
    pub(crate) fn release_below(&mut self, inputs: &[Position]) {
        let mut to = None;
        while let Some((end, highest)) = self.kept.front() {
            let passed = highest
                .iter()
                .zip(inputs)
                .all(|(h, p)| h.is_none_or(|h| h < p.done));
            if !passed {
                break;
            }
            to = Some(*end);
            self.kept.pop_front();
        }
        if let Some(to) = to {
            self.reader.release_to(to);
        }
    }
}

/// What a successor makes of its journal's frames.
#[derive(Debug)]
struct Back {
    done: DoneAbove,
    kept: VecDeque<(u64, Vec<Option<u64>>)>,
    /// The highest tag written (or voided): the next steps go above.
    top: u64,
}

/// The journal's `frames` (tag, words, end), read back by the successor
/// of a node with `inputs` inputs whose last checkpoint is `before`: the
/// entries of the steps it covers (tags up to its own, not voided) above
/// its done lines.
fn read_back(
    frames: &[(u64, Vec<u64>, u64)],
    before: &Checkpoint,
    inputs: usize,
) -> Result<Back, String> {
    let voids: Vec<(u64, u64)> = frames
        .iter()
        .filter(|(_, w, _)| w.first() == Some(&VOID) && w.len() == 3)
        .map(|(_, w, _)| (w[1], w[2]))
        .collect();
    let void = |tag: u64| voids.iter().any(|&(from, to)| (from..=to).contains(&tag));
    let mut back = Back {
        done: DoneAbove(vec![HashSet::new(); inputs]),
        kept: VecDeque::new(),
        top: before.step,
    };
    for (tag, words, after) in frames {
        let voided = words.first() == Some(&VOID) && words.len() == 3;
        back.top = back.top.max(if voided { words[2] } else { *tag });
        let mut highest = vec![None; inputs];
        if !voided {
            if words.len() % 2 != 0 {
                return Err(format!("its journal's step {tag} is cut short"));
            }
            for pair in words.chunks_exact(2) {
                let (u, pos) = (pair[0] as usize, pair[1]);
                if u >= inputs {
                    return Err(format!("its journal names input {u} of {inputs}"));
                }
                highest[u] = highest[u].max(Some(pos));
                if *tag <= before.step && !void(*tag) && pos >= before.inputs[u].done {
                    back.done.0[u].insert(pos);
                }
            }
        }
        back.kept.push_back((*after, highest));
    }
    Ok(back)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(test: &str) -> RingName {
        RingName::new(&format!("j{}_{test}", std::process::id()), "C").unwrap()
    }

    fn checkpoint(step: u64, done: [u64; 2]) -> Checkpoint {
        Checkpoint {
            step,
            inputs: done
                .iter()
                .map(|d| Position {
                    done: *d,
                    read: d + 10_000,
                })
                .collect(),
            ..Checkpoint::default()
        }
    }

    fn entries(tag: u64, pairs: &[(u64, u64)]) -> (u64, Vec<u64>, u64) {
        let words = pairs.iter().flat_map(|&(u, p)| [u, p]).collect();
        (tag, words, tag * 100)
    }

    /// A successor sees the entries of committed steps above the done
    /// lines, not those of a step never committed, which stay void for the
    /// next successor too; its own steps are numbered above them.
    #[test]
    fn a_successor_reads_the_committed_steps_and_voids_the_others() {
        let mut frames = vec![
            entries(1, &[(0, 64), (1, 32)]),
            entries(3, &[(0, 128), (0, 16)]),
            // Written, never committed: the checkpoint says step 3.
            entries(4, &[(1, 96)]),
        ];
        // Done lines at 32 (input 0) and 0 (input 1): 16 is below.
        let back = read_back(&frames, &checkpoint(3, [32, 0]), 2).unwrap();
        let done = &back.done;
        assert!(done.contains(0, 64) && done.contains(1, 32) && done.contains(0, 128));
        assert!(!done.contains(0, 16), "below the done line");
        assert!(!done.contains(1, 96), "a step never committed");
        assert_eq!(back.top, 4, "the successor's steps go above every tag");
        assert_eq!(back.kept.len(), 3);
        // The successor voids step 4, then commits its step 5: for the
        // next successor, 4 stays void and 5 counts.
        frames.push((4, vec![VOID, 4, 4], 450));
        frames.push(entries(5, &[(1, 200)]));
        let back = read_back(&frames, &checkpoint(5, [32, 0]), 2).unwrap();
        assert!(!back.done.contains(1, 96), "void for good");
        assert!(back.done.contains(1, 200) && back.done.contains(0, 64));
        assert_eq!(back.top, 5);
        // A journal naming an input the node does not have is refused.
        let bad = [entries(1, &[(2, 8)])];
        assert!(read_back(&bad, &checkpoint(1, [0, 0]), 2).is_err());
    }

    /// Frames are released once published done lines passed every position
    /// they name, in order.
    #[test]
    fn frames_go_once_the_done_lines_passed_them() {
        let name = name("release");
        let me = ProcessStamp::current();
        let (mut j, _) = Journal::open(&name, (2, 1 << 16, me), None).unwrap();
        j.step(&[(0, 64)]).unwrap();
        j.step(&[(1, 500)]).unwrap();
        j.step(&[(0, 80)]).unwrap();
        let start = j.reader.cursor();
        let at = |a, b| [Position { done: a, read: a }, Position { done: b, read: b }];
        j.release_below(&at(100, 100));
        assert_eq!(j.kept.len(), 2, "the second frame holds the third");
        assert!(j.reader.cursor() > start);
        j.release_below(&at(100, 501));
        assert!(j.kept.is_empty());
        assert_eq!(j.reader.cursor(), j.writer.written());
        let _ = clusterduck_transport::remove_run_segments(name.run_id());
    }
}
