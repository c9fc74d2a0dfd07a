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

/// Reads `reader` (the ring of `upstream`) into `edge` until its end.
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
                        FrameKind::Data => {
                            let value = match codec.decode(frame.bytes()) {
                                Ok(value) => value,
                                Err(e) => {
                                    control.fail(Failure::Node {
                                        node: node.clone(),
                                        seq: Some(frame.seq()),
                                        message: format!("bad value from {upstream}: {e}"),
                                    });
                                    return;
                                }
                            };
                            if send(&edge, Msg::Data(frame.seq(), value), &control.stop).is_err() {
                                return;
                            }
                        }
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
