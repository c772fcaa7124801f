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
