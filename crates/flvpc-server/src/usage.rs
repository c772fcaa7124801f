//! The live usage sampler: every few seconds, what each running machine uses
//! (CPU %, memory, network bytes, OOM kills), kept for the last hour in memory.
//! Read straight from the kernel's counters through `flvpc_host::read_usage`.
//!
//! Its cost grows with the machines, every round, so a round asks the engine once (the list
//! of containers) and reads the kernel's files in one blocking task: a machine's PID 1 is found
//! once, with its start time and the container's cgroup directories, and kept while that process
//! still has that start time (an inspect only for new or restarted containers; no
//! `/proc/PID/status` or `/proc/PID/cgroup` read in a settled round), and the OOM kill count walks a machine's cgroups only when its memory
//! limit was hit, or every [`OOM_WALK_EVERY`] rounds (issue 9: idle cost at 200 machines).

use crate::reconcile::Engines;
use flvpc_host::{ContainerInit, Engine, MachineState, RawUsage};
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Every this many rounds the OOM kill counts are read in full (kills by the host's own OOM
/// killer, which do not show in a machine's limit counter): a minute at the 5 s interval.
pub const OOM_WALK_EVERY: u64 = 12;

struct Series {
    container_id: String,
    /// The container's PID 1 on the host (with its start time and cgroups) when last sampled.
    init: Option<ContainerInit>,
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
    /// How long the last round took (for the sampler's own overhead).
    last_round: Mutex<Duration>,
    rounds: AtomicU64,
    /// Rounds finished: what was rendered from the samples stays true until this moves.
    finished: AtomicU64,
}

/// One running machine to read in a round.
struct Job {
    key: (String, String),
    machine: flvpc_model::MachineKey,
    container_id: String,
    init: Option<ContainerInit>,
    /// The PID the engine reported, when `init` had to be found again.
    reported_pid: Option<u32>,
    previous: Option<RawUsage>,
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
            rounds: AtomicU64::new(0),
            finished: AtomicU64::new(0),
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
        let full_oom = self.rounds.fetch_add(1, Ordering::Relaxed).is_multiple_of(OOM_WALK_EVERY);
        let mut seen = HashSet::new();
        let mut complete = true;
        // Only engines on this kernel: their machines' PIDs and cgroups are readable here. Machines
        // on other hosts show no live use (their series are simply absent).
        for (_, engine) in self.engines.all().into_iter().filter(|(_, e)| e.on_this_kernel()) {
            match self.sample_engine(&engine, full_oom).await {
                Some(keys) => seen.extend(keys),
                None => complete = false,
            }
        }
        if complete {
            lock(&self.series).retain(|k, _| seen.contains(k));
        }
        self.finished.fetch_add(1, Ordering::Release);
    }

    /// Moves after every round: a view of the samples taken at one value is current until it moves.
    pub fn version(&self) -> u64 {
        self.finished.load(Ordering::Acquire)
    }

    /// One round over the running machines of one engine; the keys it sampled, or None when the
    /// engine did not answer (its machines' series are then kept).
    async fn sample_engine(&self, engine: &Arc<dyn Engine>, full_oom: bool) -> Option<Vec<(String, String)>> {
        let machines = engine.list_machines(None).await.ok()?;
        let mut jobs: Vec<Job> = {
            let series = lock(&self.series);
            machines
                .into_iter()
                // The engine lists only this instance's machines.
                .filter(|m| m.state == MachineState::Running)
                .map(|m| {
                    let key = (m.key.namespace.to_string(), m.key.name.to_string());
                    let known = series.get(&key).filter(|s| s.container_id == m.id);
                    Job {
                        init: known.and_then(|s| s.init.clone()),
                        reported_pid: None,
                        previous: known.filter(|_| !full_oom).map(|s| s.last_raw),
                        key,
                        machine: m.key,
                        container_id: m.id,
                    }
                })
                .collect()
        };
        // An init kept from the last round is used only while it is still the same process.
        let mut jobs = tokio::task::spawn_blocking(move || {
            for job in &mut jobs {
                job.init = job.init.take().filter(ContainerInit::is_current);
            }
            jobs
        })
        .await
        .ok()?;
        let mut read = Vec::with_capacity(jobs.len());
        for mut job in jobs.drain(..) {
            if job.init.is_none() {
                let Ok(Some(details)) = engine.inspect_machine(&job.machine).await else { continue };
                job.reported_pid = details.pid;
                job.previous = None;
            }
            read.push(job);
        }
        let root = self.cgroup_root.clone();
        let readings = tokio::task::spawn_blocking(move || {
            read.into_iter()
                .filter_map(|mut job| {
                    if job.init.is_none() {
                        job.init = job.reported_pid.and_then(|pid| ContainerInit::find(&root, &job.container_id, pid));
                    }
                    let raw = match &job.init {
                        Some(init) => init.read_usage(job.previous.as_ref())?,
                        // No init found (a container between states): the counters by the container's
                        // ID alone, without its network.
                        None => flvpc_host::read_usage(&root, &job.container_id, None, job.previous.as_ref())?,
                    };
                    Some((job, raw))
                })
                .collect::<Vec<_>>()
        })
        .await
        .ok()?;
        let mut seen = Vec::with_capacity(readings.len());
        for (job, raw) in readings {
            self.record(job.key.clone(), &job.container_id, job.init, raw);
            seen.push(job.key);
        }
        Some(seen)
    }

    fn record(&self, key: (String, String), container_id: &str, init: Option<ContainerInit>, raw: RawUsage) {
        let now = Instant::now();
        let t = flvpc_store::now_ms();
        let mut all = lock(&self.series);
        let series = all.entry(key).or_insert_with(|| Series {
            container_id: container_id.to_owned(),
            init: init.clone(),
            last_raw: raw,
            last_at: now,
            points: VecDeque::new(),
            oom_kills: raw.oom_kills,
        });
        if series.container_id != container_id {
            // A new container (recreated machine): its counters start again.
            *series = Series {
                container_id: container_id.to_owned(),
                init,
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
        series.init = init;
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
