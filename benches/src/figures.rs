//! What one bench run measured, its median over runs, and how it prints: a
//! table row or one JSON object per line.

/// The figures of one run (or the median of several); as JSON, one key per
/// field.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Figures {
    pub(crate) workload: String,
    pub(crate) transport: String,
    /// How workers took their values: `owned` or `archived`.
    pub(crate) input: String,
    /// How spouts sent them: `ref` or `value`.
    pub(crate) send: String,
    pub(crate) messages: u64,
    pub(crate) payload_bytes: u64,
    pub(crate) batch: u64,
    pub(crate) spin_us: u64,
    pub(crate) ring_bytes: u64,
    pub(crate) rate: u64,
    /// One value in this many carried a stamp for the latency figures.
    pub(crate) stamp_every: u64,
    pub(crate) seconds: f64,
    /// Messages (joined pairs for `join`) per second.
    pub(crate) msgs_per_s: f64,
    pub(crate) mb_per_s: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) max_rss_mb: f64,
    /// For `join`: the bundled worker's peak RSS, and its window.
    pub(crate) bundler_rss_mb: f64,
    pub(crate) window: u64,
    /// Nodes and hosts of the run.
    pub(crate) nodes: u64,
    pub(crate) hosts: u64,
    /// From the launch to the start (every node ready), and from the launch
    /// to the end of the run, in seconds.
    pub(crate) launch_s: f64,
    pub(crate) total_s: f64,
    /// For runs across test hosts: `ssh host true` to every host at once,
    /// measured just before the launch (the floor of a launch), seconds.
    pub(crate) ssh_floor_s: f64,
    /// For values of 1 MiB or more: one `memcpy` of a value's bytes, in
    /// MB/s, measured just before the run (what a copy would cost).
    pub(crate) memcpy_mb_s: f64,
    /// For values of 1 MiB or more across test hosts: one `iperf3` TCP
    /// stream from the first host to the second, in MB/s, measured just
    /// before the run (what the network carries at best).
    #[serde(default)]
    pub(crate) iperf3_mb_s: f64,
}

impl Figures {
    /// One JSON object, the keys the issue names (and the knobs).
    pub(crate) fn json(&self) -> String {
        serde_json::to_string(self).expect("figures serialise")
    }

    /// Reads back what [`json`](Self::json) wrote.
    pub(crate) fn parse(line: &str) -> Result<Self, String> {
        serde_json::from_str(line.trim()).map_err(|e| format!("{e}: {line}"))
    }

    /// The median of each figure over `runs` (of one configuration).
    pub(crate) fn median(runs: &[Figures]) -> Figures {
        let med = |get: fn(&Figures) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(get).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        Figures {
            seconds: med(|f| f.seconds),
            msgs_per_s: med(|f| f.msgs_per_s),
            mb_per_s: med(|f| f.mb_per_s),
            p50_us: med(|f| f.p50_us),
            p99_us: med(|f| f.p99_us),
            p999_us: med(|f| f.p999_us),
            max_rss_mb: med(|f| f.max_rss_mb),
            bundler_rss_mb: med(|f| f.bundler_rss_mb),
            launch_s: med(|f| f.launch_s),
            total_s: med(|f| f.total_s),
            ssh_floor_s: med(|f| f.ssh_floor_s),
            memcpy_mb_s: med(|f| f.memcpy_mb_s),
            iperf3_mb_s: med(|f| f.iperf3_mb_s),
            ..runs[0].clone()
        }
    }

    pub(crate) const HEADER: &'static str = "workload transport input    send    messages payload   batch spin µs ring KiB     rate stamped    seconds      msgs/s       MB/s   p50 µs   p99 µs p99.9 µs  rss MiB  window  J rss MiB nodes hosts launch s  total s    ssh s memcpy MB/s iperf3 MB/s";

    /// One table row.
    pub(crate) fn row(&self) -> String {
        format!(
            "{:<8} {:<9} {:<8} {:<5} {:>10} {:>7} {:>7} {:>7} {:>8} {:>8} {:>7} {:>10.3} {:>11.0} {:>10.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>7} {:>10} {:>5} {:>5} {:>8.3} {:>8.3} {:>8} {:>11} {:>11}",
            self.workload,
            self.transport,
            self.input,
            self.send,
            self.messages,
            self.payload_bytes,
            self.batch,
            self.spin_us,
            self.ring_bytes / 1024,
            if self.rate == 0 { "max".to_owned() } else { self.rate.to_string() },
            if self.stamp_every <= 1 { "all".to_owned() } else { format!("1/{}", self.stamp_every) },
            self.seconds,
            self.msgs_per_s,
            self.mb_per_s,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_rss_mb,
            if self.window == 0 { "-".to_owned() } else { self.window.to_string() },
            if self.window == 0 { "-".to_owned() } else { format!("{:.1}", self.bundler_rss_mb) },
            self.nodes,
            self.hosts,
            self.launch_s,
            self.total_s,
            if self.ssh_floor_s == 0.0 { "-".to_owned() } else { format!("{:.3}", self.ssh_floor_s) },
            if self.memcpy_mb_s == 0.0 { "-".to_owned() } else { format!("{:.1}", self.memcpy_mb_s) },
            if self.iperf3_mb_s == 0.0 { "-".to_owned() } else { format!("{:.1}", self.iperf3_mb_s) }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_medians_are_per_figure() {
        let f = Figures {
            workload: "join".into(),
            transport: "shm".into(),
            input: "archived".into(),
            send: "ref".into(),
            messages: 10,
            payload_bytes: 64,
            batch: 32,
            spin_us: 50,
            ring_bytes: 1 << 20,
            rate: 0,
            stamp_every: 16,
            seconds: 1.5,
            msgs_per_s: 6.0,
            mb_per_s: 0.5,
            p50_us: 1.0,
            p99_us: 2.0,
            p999_us: 3.0,
            max_rss_mb: 4.0,
            bundler_rss_mb: 3.0,
            window: 4096,
            nodes: 4,
            hosts: 2,
            launch_s: 0.25,
            total_s: 1.75,
            ssh_floor_s: 0.5,
            memcpy_mb_s: 9000.5,
            iperf3_mb_s: 600.5,
        };
        assert_eq!(Figures::parse(&f.json()).unwrap(), f);
        let runs: Vec<Figures> = [3.0, 1.0, 2.0]
            .iter()
            .map(|x| Figures {
                msgs_per_s: *x,
                p99_us: 10.0 - x,
                ..f.clone()
            })
            .collect();
        let m = Figures::median(&runs);
        assert_eq!((m.msgs_per_s, m.p99_us), (2.0, 8.0));
    }
}
