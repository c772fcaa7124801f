//! The live usage sampler: every few seconds, what each running machine uses
//! (CPU %, memory, network bytes, OOM kills), kept for the last hour in memory.
//! Read straight from the kernel's counters through `flvpc_host::read_usage`,
//! with one Docker inspect per machine for its PID and container id.

use crate::reconcile::Engines;
use flvpc_host::{MachineState, RawUsage};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One sample of one machine.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct UsagePoint {
    /// When (ms since the epoch).
    pub t: i64,
    /// CPU use since the previous sample, in percent of one CPU (200 = two CPUs busy).
    pub cpu_percent: f64,
    /// Memory in use, MB (page cache that can be dropped excluded).
    pub memory_mb: f64,
    /// Bytes received since the machine started.
    pub net_rx_bytes: u64,
    /// Bytes sent since the machine started.
    pub net_tx_bytes: u64,
}

struct Series {
    container_id: String,
    last_raw: RawUsage,
    last_at: Instant,
    points: VecDeque<UsagePoint>,
    oom_kills: u64,
}

/// The sampler and what it has seen.
pub struct UsageSampler {
    engines: Engines,
    interval: Duration,
    keep: usize,
    cgroup_root: PathBuf,
    series: Mutex<HashMap<(String, String), Series>>,
    /// How long the last sampling round took (for the sampler's own overhead).
    last_round: Mutex<Duration>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl UsageSampler {
    /// A sampler of every machine of `engines` every `interval`, keeping an hour of points.
    pub fn new(engines: Engines, interval: Duration) -> Self {
        let keep = (3600 / interval.as_secs().max(1)) as usize;
        Self {
            engines,
            interval,
            keep,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            series: Mutex::default(),
            last_round: Mutex::default(),
        }
    }

    /// Samples forever (spawned by `serve`).
    pub async fn run(self: Arc<Self>) {
        loop {
            let started = Instant::now();
            self.sample_once().await;
            *lock(&self.last_round) = started.elapsed();
            tokio::time::sleep(self.interval).await;
        }
    }

    /// One round over every running machine of this flvpc, on every engine. (An engine that
    /// does not answer keeps its machines' series until it does: a round does not forget them.)
    pub async fn sample_once(&self) {
        let mut seen = Vec::new();
        let mut complete = true;
        for (_, engine) in self.engines.iter() {
            let Ok(machines) = engine.list_machines(None).await else {
                complete = false;
                continue;
            };
            for m in machines {
                // The engine lists only this instance's machines.
                if m.state != MachineState::Running {
                    continue;
                }
                let Ok(Some(details)) = engine.inspect_machine(&m.key).await else { continue };
                let (root, id, pid) = (self.cgroup_root.clone(), m.id.clone(), details.pid);
                let Ok(Some(raw)) = tokio::task::spawn_blocking(move || flvpc_host::read_usage(&root, &id, pid)).await
                else {
                    continue;
                };
                let key = (m.key.namespace.to_string(), m.key.name.to_string());
                self.record(key.clone(), &m.id, raw);
                seen.push(key);
            }
        }
        if complete {
            lock(&self.series).retain(|k, _| seen.contains(k));
        }
    }

    fn record(&self, key: (String, String), container_id: &str, raw: RawUsage) {
        let now = Instant::now();
        let t = flvpc_store::now_ms();
        let mut all = lock(&self.series);
        let series = all.entry(key).or_insert_with(|| Series {
            container_id: container_id.to_owned(),
            last_raw: raw,
            last_at: now,
            points: VecDeque::new(),
            oom_kills: raw.oom_kills,
        });
        if series.container_id != container_id {
            // A new container (recreated machine): its counters start again.
            *series = Series {
                container_id: container_id.to_owned(),
                last_raw: raw,
                last_at: now,
                points: VecDeque::new(),
                oom_kills: raw.oom_kills,
            };
            return;
        }
        let wall = now.duration_since(series.last_at).as_nanos() as f64;
        if wall <= 0.0 {
            return;
        }
        let cpu = raw.cpu_ns.saturating_sub(series.last_raw.cpu_ns) as f64 / wall * 100.0;
        series.points.push_back(UsagePoint {
            t,
            cpu_percent: (cpu * 10.0).round() / 10.0,
            memory_mb: (raw.memory_bytes as f64 / 1_048_576.0 * 10.0).round() / 10.0,
            net_rx_bytes: raw.net_rx_bytes,
            net_tx_bytes: raw.net_tx_bytes,
        });
        while series.points.len() > self.keep {
            series.points.pop_front();
        }
        series.oom_kills = raw.oom_kills;
        series.last_raw = raw;
        series.last_at = now;
    }

    /// The last hour of one machine.
    pub fn points(&self, namespace: &str, name: &str) -> Vec<UsagePoint> {
        lock(&self.series)
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|s| s.points.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The latest point and the OOM kills of one machine.
    pub fn latest(&self, namespace: &str, name: &str) -> (Option<UsagePoint>, u64) {
        lock(&self.series)
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|s| (s.points.back().copied(), s.oom_kills))
            .unwrap_or((None, 0))
    }

    /// Every machine's latest point and OOM kills, for /metrics and the capacity report.
    pub fn all_latest(&self) -> Vec<((String, String), UsagePoint, u64)> {
        lock(&self.series).iter().filter_map(|(k, s)| s.points.back().map(|p| (k.clone(), *p, s.oom_kills))).collect()
    }

    /// How long the last round took.
    pub fn last_round(&self) -> Duration {
        *lock(&self.last_round)
    }
}
