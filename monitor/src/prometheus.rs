//! The run's figures in the Prometheus text format, encoded at each scrape
//! from the last status by `prometheus-client`. Names follow Prometheus's
//! conventions: the `clusterduck_` prefix, base units (seconds, bytes),
//! `_total` for counters (which Prometheus turns into rates), ratios as
//! `_ratio` gauges of the master's last interval. Labels: `node`,
//! `replica`, `host` for nodes; `edge` (`A->C`), `from`, `to` for edges;
//! never a sequence id.

use std::sync::{Arc, Mutex};

use clusterduck_engine::metrics::{EdgeStatus, LinkState, NodeStatus, Status};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The last status, shared with the server.
pub(crate) type Board = Arc<Mutex<Option<Arc<Status>>>>;

/// Encodes the last status at every scrape.
#[derive(Debug)]
struct StatusCollector(Board);

type Labels = Vec<(&'static str, String)>;

fn node_labels(n: &NodeStatus) -> Labels {
    vec![
        ("node", n.node.clone()),
        ("replica", n.replica.to_string()),
        ("host", n.host.clone()),
    ]
}

fn edge_labels(e: &EdgeStatus) -> Labels {
    vec![
        ("edge", format!("{}->{}", e.from, e.to)),
        ("from", e.from.clone()),
        ("to", e.to.clone()),
    ]
}

/// What a metric is: name, help, and how to read it from a row.
struct Family<T> {
    name: &'static str,
    help: &'static str,
    counter: bool,
    value: fn(&T) -> Option<f64>,
}

fn encode<T>(
    encoder: &mut DescriptorEncoder,
    rows: &[T],
    labels: fn(&T) -> Labels,
    families: &[Family<T>],
) -> Result<(), std::fmt::Error> {
    for f in families {
        let kind = if f.counter {
            MetricType::Counter
        } else {
            MetricType::Gauge
        };
        let mut metric = encoder.encode_descriptor(f.name, f.help, None, kind)?;
        for row in rows {
            let Some(v) = (f.value)(row) else { continue };
            let labels = labels(row);
            let e = metric.encode_family(&labels)?;
            if f.counter {
                ConstCounter::new(v).encode(e)?;
            } else {
                ConstGauge::new(v).encode(e)?;
            }
        }
    }
    Ok(())
}

/// Whether a node has a bundling table (and policies).
fn bundled(n: &NodeStatus) -> bool {
    n.kind == "bundled"
}

fn some(v: impl Into<f64>) -> Option<f64> {
    Some(v.into())
}

const NODE_FAMILIES: &[Family<NodeStatus>] = &[
    Family {
        name: "clusterduck_values_in",
        help: "Values a node took from its upstreams.",
        counter: true,
        value: |n| some(n.values_in as f64),
    },
    Family {
        name: "clusterduck_values_out",
        help: "Values a node emitted.",
        counter: true,
        value: |n| some(n.values_out as f64),
    },
    Family {
        name: "clusterduck_busy_seconds",
        help: "Time a node worked: its function and the engine around it.",
        counter: true,
        value: |n| some(n.busy_s),
    },
    Family {
        name: "clusterduck_idle_seconds",
        help: "Time a node waited for input.",
        counter: true,
        value: |n| some(n.idle_s),
    },
    Family {
        name: "clusterduck_blocked_seconds",
        help: "Time a node was held back by a full output.",
        counter: true,
        value: |n| some(n.blocked_s),
    },
    Family {
        name: "clusterduck_busy_ratio",
        help: "Share of the last second a node worked.",
        counter: false,
        value: |n| some(n.busy),
    },
    Family {
        name: "clusterduck_blocked_ratio",
        help: "Share of the last second a node was held back by a full output.",
        counter: false,
        value: |n| some(n.blocked),
    },
    Family {
        name: "clusterduck_function_p50_seconds",
        help: "Median time of a node's function per value or bundle, over the last second.",
        counter: false,
        value: |n| n.p50_s,
    },
    Family {
        name: "clusterduck_function_p99_seconds",
        help:
            "99th percentile of a node's function time per value or bundle, over the last second.",
        counter: false,
        value: |n| n.p99_s,
    },
    Family {
        name: "clusterduck_table_values",
        help: "Values a bundled node's table holds.",
        counter: false,
        value: |n| bundled(n).then_some(n.table as f64),
    },
    Family {
        name: "clusterduck_table_fill_ratio",
        help: "Share of its room a bundled node's table holds.",
        counter: false,
        value: |n| bundled(n).then_some(n.table_fill),
    },
    Family {
        name: "clusterduck_duplicates_dropped",
        help: "Duplicate values a bundled node dropped.",
        counter: true,
        value: |n| bundled(n).then_some(n.policy.duplicates as f64),
    },
    Family {
        name: "clusterduck_late_dropped",
        help: "Late values a bundled node dropped.",
        counter: true,
        value: |n| bundled(n).then_some(n.policy.late as f64),
    },
    Family {
        name: "clusterduck_gaps",
        help: "Bundles a node gave up as gaps.",
        counter: true,
        value: |n| bundled(n).then_some(n.policy.gaps as f64),
    },
    Family {
        name: "clusterduck_evicted",
        help: "Bundles a node evicted from a full table.",
        counter: true,
        value: |n| bundled(n).then_some(n.policy.evicted as f64),
    },
    Family {
        name: "clusterduck_resident_memory_bytes",
        help: "Resident memory of a node's process.",
        counter: false,
        value: |n| n.rss_kib.map(|k| k as f64 * 1024.0),
    },
    Family {
        name: "clusterduck_peak_resident_memory_bytes",
        help: "Peak resident memory of a node's process.",
        counter: false,
        value: |n| n.peak_rss_kib.map(|k| k as f64 * 1024.0),
    },
    Family {
        name: "clusterduck_node_restarts",
        help: "Times a node's process was restarted.",
        counter: true,
        value: |n| some(n.restarts as f64),
    },
    Family {
        name: "clusterduck_node_up",
        help: "1 while a node runs (or starts), 0 once it ended, failed or died.",
        counter: false,
        value: |n| some(if n.is_live() { 1.0 } else { 0.0 }),
    },
];

const EDGE_FAMILIES: &[Family<EdgeStatus>] = &[
    Family {
        name: "clusterduck_ring_fill_bytes",
        help: "Bytes of an edge's ring its consumer has not released.",
        counter: false,
        value: |e| some(e.fill_bytes as f64),
    },
    Family {
        name: "clusterduck_ring_capacity_bytes",
        help: "Size of an edge's ring.",
        counter: false,
        value: |e| some(e.capacity as f64),
    },
    Family {
        name: "clusterduck_ring_fill_ratio",
        help: "Share of an edge's ring its consumer holds.",
        counter: false,
        value: |e| some(e.fill),
    },
    Family {
        name: "clusterduck_edge_lag_ids",
        help: "Ids the consumer is behind its producer: the last emitted less the last taken.",
        counter: false,
        value: |e| e.lag.map(|l| l as f64),
    },
    Family {
        name: "clusterduck_link_received_bytes",
        help: "Bytes a cross-host edge's link received.",
        counter: true,
        value: |e| e.link.as_ref().map(|l| l.bytes as f64),
    },
    Family {
        name: "clusterduck_link_up",
        help: "1 while a cross-host edge's link carries its stream.",
        counter: false,
        value: |e| {
            e.link
                .as_ref()
                .map(|l| if l.state == LinkState::Up { 1.0 } else { 0.0 })
        },
    },
];

impl Collector for StatusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(status) = status else {
            return Ok(());
        };
        encode(&mut encoder, &status.nodes, node_labels, NODE_FAMILIES)?;
        encode(&mut encoder, &status.edges, edge_labels, EDGE_FAMILIES)?;
        let bottleneck: Vec<&NodeStatus> = status
            .nodes
            .iter()
            .filter(|n| status.bottleneck.as_deref() == Some(n.name.as_str()))
            .collect();
        let mut metric = encoder.encode_descriptor(
            "clusterduck_bottleneck",
            "1 for the node that holds the run back now (busy, not held back by its consumers).",
            None,
            MetricType::Gauge,
        )?;
        for n in bottleneck {
            ConstGauge::new(1i64).encode(metric.encode_family(&node_labels(n))?)?;
        }
        Ok(())
    }
}

/// A registry that encodes `board` at every scrape.
pub(crate) fn registry(board: Board) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StatusCollector(board)));
    registry
}

/// The text of a scrape.
pub(crate) fn scrape(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("encoding into a String cannot fail");
    text
}
