//! Counters exported at /metrics in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

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

impl Metrics {
    /// Counts a response with `status`.
    pub fn response(&self, status: u16) {
        let class = usize::from(status / 100).min(5);
        self.http_responses[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Renders the counters plus gauges supplied by the caller.
    pub fn render(&self, gauges: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP flvpc_http_responses_total HTTP responses by status class.\n");
        out.push_str("# TYPE flvpc_http_responses_total counter\n");
        for class in 1..=5 {
            let _ = writeln!(
                out,
                "flvpc_http_responses_total{{class=\"{class}xx\"}} {}",
                self.http_responses[class].load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP flvpc_logins_total Sign-in attempts by outcome.\n# TYPE flvpc_logins_total counter\n");
        for (outcome, counter) in
            [("ok", &self.logins_ok), ("failed", &self.logins_failed), ("throttled", &self.logins_throttled)]
        {
            let _ = writeln!(out, "flvpc_logins_total{{outcome=\"{outcome}\"}} {}", counter.load(Ordering::Relaxed));
        }
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}

/// Compares a presented token with the configured one in time independent of where they differ.
pub fn same_secret(expected: &str, presented: &str) -> bool {
    use sha2::{Digest, Sha256};
    // Hashing first makes the comparison fixed-length, so not even the length leaks.
    let (a, b) = (Sha256::digest(expected.as_bytes()), Sha256::digest(presented.as_bytes()));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One exported machine series: name, Prometheus type, help, and how to read it from a sample.
type MachineSeries = (&'static str, &'static str, &'static str, fn(&crate::usage::UsagePoint, u64) -> f64);

/// The `flvpc_machine_*` series: each running machine's latest sample.
pub fn render_machines(latest: &[((String, String), crate::usage::UsagePoint, u64)]) -> String {
    let mut out = String::new();
    let series: [MachineSeries; 5] = [
        ("flvpc_machine_cpu_percent", "gauge", "CPU use of a machine, percent of one CPU.", |p, _| p.cpu_percent),
        ("flvpc_machine_memory_bytes", "gauge", "Memory a machine uses.", |p, _| p.memory_mb * 1_048_576.0),
        ("flvpc_machine_network_receive_bytes_total", "counter", "Bytes a machine received.", |p, _| {
            p.net_rx_bytes as f64
        }),
        ("flvpc_machine_network_transmit_bytes_total", "counter", "Bytes a machine sent.", |p, _| {
            p.net_tx_bytes as f64
        }),
        (
            "flvpc_machine_oom_kills_total",
            "counter",
            "Processes of a machine killed for exceeding its memory limit.",
            |_, o| o as f64,
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for ((ns, machine), point, ooms) in latest {
            // Names are validated (a-z 0-9 -), so they need no escaping in label values.
            let _ = writeln!(out, "{name}{{namespace=\"{ns}\",machine=\"{machine}\"}} {}", value(point, *ooms));
        }
    }
    out
}
