//! A node's inputs in process mode: one thread per upstream reads that
//! upstream's ring, validates and decodes each value, and hands it to the
//! node's loop through a bounded edge. While the edge is full the thread
//! holds its frames, so the upstream's writer waits: back-pressure reaches
//! the spout.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clusterduck_transport::{FrameKind, ReadError, RingReader};

use crate::body::Codec;
use crate::report::Failure;
use crate::run::edge::{send, EdgeTx, Msg};
use crate::run::RunControl;

/// Values handed to the node's loop at once, at most.
pub(crate) const BATCH: usize = 256;

/// Reads `reader` (the ring of `upstream`) into `edge` until its end, in
/// batches of up to [`BATCH`] values.
pub(crate) fn spawn_reader(
    node: String,
    upstream: String,
    mut reader: RingReader,
    codec: Arc<dyn Codec>,
    edge: EdgeTx,
    control: Arc<RunControl>,
) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name(format!("{node}<-{upstream}"))
        .spawn(move || {
            let problem = loop {
                let batch = match reader.read() {
                    Ok(batch) => batch,
                    Err(ReadError::Ended) => break None,
                    Err(e) => break Some(e.to_string()),
                };
                let mut ended = false;
                let mut values = Vec::new();
                for frame in batch.iter() {
                    let frame = match frame {
                        Ok(frame) => frame,
                        Err(e) => {
                            control.fail(Failure::Node {
                                node: node.clone(),
                                seq: None,
                                message: format!("bad frame from {upstream}: {e}"),
                            });
                            return;
                        }
                    };
                    match frame.kind() {
                        FrameKind::Data => match codec.decode(frame.bytes()) {
                            Ok(value) => values.push((frame.seq(), value)),
                            Err(e) => {
                                control.fail(Failure::Node {
                                    node: node.clone(),
                                    seq: Some(frame.seq()),
                                    message: format!("bad value from {upstream}: {e}"),
                                });
                                return;
                            }
                        },
                        FrameKind::End => ended = true,
                        other => {
                            control.fail(Failure::Node {
                                node: node.clone(),
                                seq: Some(frame.seq()),
                                message: format!("unexpected {other:?} frame from {upstream}"),
                            });
                            return;
                        }
                    }
                    if values.len() == BATCH {
                        let full = std::mem::take(&mut values);
                        if send(&edge, Msg::Batch(full), &control.stop).is_err() {
                            return;
                        }
                    }
                }
                // The ring's space goes back once the values are handed over.
                if !values.is_empty() && send(&edge, Msg::Batch(values), &control.stop).is_err() {
                    return;
                }
                if ended {
                    break None;
                }
            };
            match problem {
                None => {
                    let _ = send(&edge, Msg::End, &control.stop);
                }
                Some(message) => {
                    // The upstream's process is gone: the master reports it
                    // and aborts the run. This is not an end of stream, so
                    // keep the edge open until then.
                    eprintln!("clusterduck: node {node}: reading {upstream}: {message}");
                    while !control.stop.is_aborted() {
                        thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })
        .expect("spawn a ring reader thread")
}
