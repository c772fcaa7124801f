//! Counters exported at /metrics, encoded by `prometheus-client` in the Prometheus text format.
//!
//! The counters themselves stay plain atomics (cheap on every request, bumped by `ops` and the
//! middleware); each scrape copies them into a fresh `prometheus-client` registry and lets the
//! crate write the exposition, so names, escaping and HELP/TYPE lines follow the format exactly.

use crate::usage::UsagePoint;
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

/// The `Content-Type` of the exposition (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Process-wide counters. Plain atomics: cheap on every request.
#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTP responses by status class (index 1..=5).
    pub http_responses: [AtomicU64; 6],
    /// Successful sign-ins (panel and API).
    pub logins_ok: AtomicU64,
    /// Failed sign-ins.
    pub logins_failed: AtomicU64,
    /// Sign-ins refused by the throttle.
    pub logins_throttled: AtomicU64,
}

/// A gauge the caller reads at scrape time: name, help, value.
pub type Aggregate<'a> = (&'a str, &'a str, u64);

/// One running machine's latest sample: (namespace, machine), the sample, its OOM kills.
pub type MachineSample = ((String, String), UsagePoint, u64);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MachineLabels {
    namespace: String,
    machine: String,
}

impl Metrics {
    /// Counts a response with `status`.
    pub fn response(&self, status: u16) {
        let class = usize::from(status / 100).min(5);
        self.http_responses[class].fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition: the counters, the `gauges` supplied by the caller and, when `machines` is
    /// given (only for readers allowed to see namespace and machine names), the per-machine series.
    pub fn render(
        &self,
        gauges: &[Aggregate<'_>],
        machines: Option<&[MachineSample]>,
    ) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        let responses = Family::<ClassLabel, Counter>::default();
        for class in 1..=5 {
            let label = ClassLabel { class: format!("{class}xx") };
            responses.get_or_create(&label).inc_by(self.http_responses[class].load(Ordering::Relaxed));
        }
        register_counter(&mut registry, "flvpc_http_responses_total", "HTTP responses by status class.", responses);
        let logins = Family::<OutcomeLabel, Counter>::default();
        for (outcome, counter) in
            [("ok", &self.logins_ok), ("failed", &self.logins_failed), ("throttled", &self.logins_throttled)]
        {
            logins.get_or_create(&OutcomeLabel { outcome }).inc_by(counter.load(Ordering::Relaxed));
        }
        register_counter(&mut registry, "flvpc_logins_total", "Sign-in attempts by outcome.", logins);
        for (name, help, value) in gauges {
            let gauge = Gauge::<u64, AtomicU64>::default();
            gauge.set(*value);
            registry.register(*name, help_text(help), gauge);
        }
        if let Some(machines) = machines {
            register_machines(&mut registry, machines);
        }
        let mut out = String::new();
        prometheus_text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

/// Registers a counter under its exposed name: the crate adds the `_total` suffix itself.
fn register_counter(registry: &mut Registry, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
    registry.register(name.strip_suffix("_total").unwrap_or(name), help_text(help), metric);
}

/// The crate ends every help with a full stop; ours are sentences that already have one.
fn help_text(help: &str) -> &str {
    help.strip_suffix('.').unwrap_or(help)
}

/// The `flvpc_machine_*` series: each running machine's latest sample.
fn register_machines(registry: &mut Registry, latest: &[MachineSample]) {
    let cpu = Family::<MachineLabels, Gauge<f64, AtomicU64>>::default();
    let memory = Family::<MachineLabels, Gauge<u64, AtomicU64>>::default();
    let received = Family::<MachineLabels, Counter>::default();
    let sent = Family::<MachineLabels, Counter>::default();
    let oom_kills = Family::<MachineLabels, Counter>::default();
    for ((namespace, machine), point, ooms) in latest {
        let labels = MachineLabels { namespace: namespace.clone(), machine: machine.clone() };
        cpu.get_or_create(&labels).set(point.cpu_percent);
        // Whole bytes: `as` saturates, and a sample is never negative.
        memory.get_or_create(&labels).set((point.memory_mb * 1_048_576.0).round() as u64);
        received.get_or_create(&labels).inc_by(point.net_rx_bytes);
        sent.get_or_create(&labels).inc_by(point.net_tx_bytes);
        oom_kills.get_or_create(&labels).inc_by(*ooms);
    }
    registry.register("flvpc_machine_cpu_percent", help_text("CPU use of a machine, percent of one CPU."), cpu);
    registry.register("flvpc_machine_memory_bytes", help_text("Memory a machine uses."), memory);
    register_counter(registry, "flvpc_machine_network_receive_bytes_total", "Bytes a machine received.", received);
    register_counter(registry, "flvpc_machine_network_transmit_bytes_total", "Bytes a machine sent.", sent);
    register_counter(
        registry,
        "flvpc_machine_oom_kills_total",
        "Processes of a machine killed for exceeding its memory limit.",
        oom_kills,
    );
}

/// Compares a presented token with the configured one in time independent of where they differ.
pub fn same_secret(expected: &str, presented: &str) -> bool {
    use sha2::{Digest, Sha256};
    // Hashing first makes the comparison fixed-length, so not even the length leaks.
    let (a, b) = (Sha256::digest(expected.as_bytes()), Sha256::digest(presented.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cpu_percent: f64, memory_mb: f64, net_rx_bytes: u64, net_tx_bytes: u64) -> UsagePoint {
        UsagePoint { t: 0, cpu_percent, memory_mb, net_rx_bytes, net_tx_bytes }
    }

    #[test]
    fn exposition_has_the_names_labels_and_values() {
        let metrics = Metrics::default();
        metrics.response(200);
        metrics.response(404);
        metrics.response(404);
        metrics.logins_failed.fetch_add(3, Ordering::Relaxed);
        let machines = [
            (("team1".to_owned(), "node0".to_owned()), sample(12.5, 128.0, 1000, 2000), 0),
            (("team2".to_owned(), "db".to_owned()), sample(0.0, 0.5, 0, 0), 2),
        ];
        let text =
            metrics.render(&[("flvpc_uptime_seconds", "Seconds since the server started.", 42)], Some(&machines));
        let text = text.expect("encoded");
        let lines: Vec<&str> = text.lines().collect();
        for expected in [
            "# HELP flvpc_http_responses_total HTTP responses by status class.",
            "# TYPE flvpc_http_responses_total counter",
            "flvpc_http_responses_total{class=\"2xx\"} 1",
            "flvpc_http_responses_total{class=\"4xx\"} 2",
            "flvpc_http_responses_total{class=\"5xx\"} 0",
            "# TYPE flvpc_logins_total counter",
            "flvpc_logins_total{outcome=\"failed\"} 3",
            "flvpc_logins_total{outcome=\"ok\"} 0",
            "# HELP flvpc_uptime_seconds Seconds since the server started.",
            "# TYPE flvpc_uptime_seconds gauge",
            "flvpc_uptime_seconds 42",
            "# TYPE flvpc_machine_cpu_percent gauge",
            "flvpc_machine_cpu_percent{namespace=\"team1\",machine=\"node0\"} 12.5",
            "# TYPE flvpc_machine_memory_bytes gauge",
            "flvpc_machine_memory_bytes{namespace=\"team1\",machine=\"node0\"} 134217728",
            "flvpc_machine_memory_bytes{namespace=\"team2\",machine=\"db\"} 524288",
            "# TYPE flvpc_machine_network_receive_bytes_total counter",
            "flvpc_machine_network_receive_bytes_total{namespace=\"team1\",machine=\"node0\"} 1000",
            "# TYPE flvpc_machine_network_transmit_bytes_total counter",
            "flvpc_machine_network_transmit_bytes_total{namespace=\"team1\",machine=\"node0\"} 2000",
            "# HELP flvpc_machine_oom_kills_total Processes of a machine killed for exceeding its memory limit.",
            "# TYPE flvpc_machine_oom_kills_total counter",
            "flvpc_machine_oom_kills_total{namespace=\"team2\",machine=\"db\"} 2",
            "flvpc_machine_oom_kills_total{namespace=\"team1\",machine=\"node0\"} 0",
        ] {
            assert!(lines.contains(&expected), "{expected:?} missing:\n{text}");
        }
        // Every family is announced once, before its samples.
        for line in lines.iter().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let announced = lines
                .iter()
                .position(|l| *l == format!("# TYPE {name} counter") || *l == format!("# TYPE {name} gauge"));
            let at = lines.iter().position(|l| l == line);
            assert!(announced.is_some() && announced < at, "{line} has no TYPE before it:\n{text}");
        }
        assert_eq!(text.matches("# HELP ").count(), text.matches("# TYPE ").count());
        assert!(!text.contains(".."), "help texts end with one full stop:\n{text}");
    }

    #[test]
    fn without_machines_there_are_no_machine_series() {
        let text = Metrics::default().render(&[], None).expect("encoded");
        assert!(!text.contains("flvpc_machine_"), "{text}");
        assert!(text.contains("flvpc_logins_total{outcome=\"throttled\"} 0\n"), "{text}");
    }
}
