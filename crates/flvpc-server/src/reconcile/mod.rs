//! The reconciler: makes the engine's machines match the database, in the
//! spirit of kube-rs's controller runtime.
//!
//! - Level-triggered and idempotent: `reconcile_one` looks only at the desired
//!   state (the machine's record) and the actual state (the engine), never at why
//!   it was called. Running it twice does nothing the second time.
//! - One reconcile in flight per machine: a machine enqueued while it is being
//!   reconciled is marked dirty and reconciled once more afterwards.
//! - Bounded concurrency across machines (a semaphore), so a 30-machine cluster
//!   is created in parallel without overwhelming the engine.
//! - The engine's events (a container started, stopped, died or went away) enqueue the
//!   machine at once, so a machine killed behind flvpc's back is seen within seconds.
//! - A periodic resync re-enqueues every machine and every labelled container,
//!   because events get lost and flvpc may have been restarted mid-operation:
//!   interrupted work is finished, labelled containers without a record are removed.
//! - Operations are progress views computed from the same observed state, so they
//!   survive a restart too. A restart request is desired state as well: the machine's
//!   record points to the pending restart operation until the engine (re)started it.
//! - Nothing is remembered between passes that the database or the engine does not say
//!   again, but which authorized_keys were written (a cache a resync drops).
//! - Every machine is acted on through the engine its record's placement names ([`Engines`]);
//!   a placement with no registered engine gets an error on the record and no engine call.
//!   Resync and events cover every registered engine: nothing here assumes there is one.

pub mod engine;
pub mod engines;
#[cfg(test)]
mod tests;

pub use engines::{Engines, MicroVmStatus, VmSetup};

use crate::events::Event;
use flvpc_host::{Engine, EngineError, MachineDetails, MachineSpec, MachineState, PortMapping};
use flvpc_model::policy::system;
use flvpc_model::{EngineKind, HostName, MachineKey, NamespaceName, Observed, OperationState, Placement};
use flvpc_store::{Desired, MachineRecord, Operation, Store};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, Semaphore};

/// The label holding the digest of a machine's creation settings: a change means a new container.
pub const LABEL_SPEC: &str = "flvpc.spec";

/// The label naming the flvpc instance (database) that made a container; the engine sets it
/// and acts only on containers carrying its own.
pub use flvpc_host::LABEL_INSTANCE;

/// Settings of the reconciler.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This flvpc's instance id: only containers with it are ours to adopt or remove.
    pub instance: String,
    /// Host address that machine ports are published on.
    pub publish_address: IpAddr,
    /// How many machines are reconciled at once.
    pub concurrency: usize,
    /// How long a machine gets to stop before it is killed.
    pub stop_timeout: Duration,
    /// How often everything is looked at again.
    pub resync_every: Duration,
    /// Most processes a machine may run at once (`None`: no limit).
    pub pids_limit: Option<u32>,
    /// The host this server runs on: new machines are placed there.
    pub host: HostName,
    /// The authorized_keys line of the server's browser-terminal key (`flvpc-panel-terminal`),
    /// appended to every machine's keys; `None` when the server offers no terminal.
    pub terminal_key: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            instance: String::new(),
            publish_address: IpAddr::from([0, 0, 0, 0]),
            concurrency: 32,
            stop_timeout: Duration::from_secs(10),
            resync_every: Duration::from_secs(30),
            pids_limit: Some(DEFAULT_PIDS_LIMIT),
            host: HostName::local(),
            terminal_key: None,
        }
    }
}

/// How long to wait before subscribing to the engine's events again.
const EVENTS_RETRY: Duration = Duration::from_secs(1);

/// The default PID limit per machine: systemd, sshd and a user's work need a few hundred; a
/// fork bomb stops here instead of at the host's limit.
pub const DEFAULT_PIDS_LIMIT: u32 = 4096;

type Key = MachineKey;

/// The event followers of the engines, by placement; dropping it stops them.
#[derive(Default)]
struct Followers(HashMap<Placement, tokio::task::JoinHandle<()>>);

impl Drop for Followers {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

#[derive(Default)]
struct Queue {
    in_flight: HashSet<Key>,
    dirty: HashSet<Key>,
}

/// The reconciler; cheap to clone.
#[derive(Clone)]
pub struct Reconciler {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    engines: Engines,
    settings: Settings,
    queue: Mutex<Queue>,
    permits: Semaphore,
    events: broadcast::Sender<Event>,
    /// The authorized_keys last written to each machine, so unchanged keys are not rewritten.
    keys_written: Mutex<HashMap<Key, String>>,
    /// Serialises operation bookkeeping.
    ops_lock: tokio::sync::Mutex<()>,
    /// Whether this process reconciles (it holds the leader lease, `crate::leader`); a process
    /// that does not only records desired state, which the leader picks up.
    leading: std::sync::atomic::AtomicBool,
    /// The open operations already enqueued here, so picking up operations recorded by other
    /// processes enqueues each once.
    operations_seen: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Reconciler {
    /// A reconciler over `store` with `engine` as the container engine of the settings' host,
    /// the one engine of a server today. Call [`Reconciler::start`] to run its resync loop.
    pub fn new(store: Arc<Store>, engine: Arc<dyn Engine>, settings: Settings) -> Self {
        let local = Placement::new(settings.host.clone(), EngineKind::Container);
        Self::with_engines(store, Engines::new().with(local, engine), settings)
    }

    /// A reconciler over `store` acting through `engines`, each machine through the one its
    /// placement names.
    pub fn with_engines(store: Arc<Store>, engines: Engines, settings: Settings) -> Self {
        let (events, _) = broadcast::channel(1024);
        let permits = Semaphore::new(settings.concurrency.max(1));
        Self {
            inner: Arc::new(Inner {
                store,
                engines,
                settings,
                queue: Mutex::default(),
                permits,
                events,
                keys_written: Mutex::default(),
                ops_lock: tokio::sync::Mutex::new(()),
                leading: std::sync::atomic::AtomicBool::new(true),
                operations_seen: Mutex::default(),
            }),
        }
    }

    /// The registered engines (image checks at validation time, health, usage).
    pub fn engines(&self) -> &Engines {
        &self.inner.engines
    }

    /// Where a new machine whose spec asks for `backend` is placed: on this server's host.
    pub fn placement_for(&self, backend: flvpc_model::spec::Backend) -> Placement {
        Placement::for_backend(self.inner.settings.host.clone(), backend)
    }

    /// Live events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Runs the periodic resync and follows the engines' events until the process ends (or
    /// the handle is aborted); the first pass starts at once (recovering whatever an earlier
    /// run left half done). Engines registered later (a host added) are followed from the next
    /// pass on; a removed one's follower is stopped.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            // Dropped with this task's future, also when it is aborted (a leader that lost its
            // lease): the followers end with it.
            let mut followers = Followers::default();
            loop {
                this.follow_new_engines(&mut followers);
                this.resync().await;
                tokio::time::sleep(this.inner.settings.resync_every).await;
            }
        })
    }

    /// Starts following the events of every engine registered since the last call, and stops
    /// following those no longer registered.
    fn follow_new_engines(&self, followers: &mut Followers) {
        let engines = self.inner.engines.all();
        followers.0.retain(|placement, task| {
            let keep = engines.iter().any(|(p, _)| p == placement);
            if !keep {
                task.abort();
            }
            keep
        });
        for (placement, engine) in engines {
            if !followers.0.contains_key(&placement) {
                let this = self.clone();
                let key = placement.clone();
                let task = tokio::spawn(async move { this.follow_events(&placement, &engine).await });
                followers.0.insert(key, task);
            }
        }
    }

    /// Enqueues each machine `engine` reports a change of. Subscribes again when the stream
    /// ends, after a pause (a down engine is not hammered; the resync covers the gap).
    async fn follow_events(&self, placement: &Placement, engine: &Arc<dyn Engine>) {
        loop {
            match engine.machine_events().await {
                Ok(Some(mut events)) => {
                    while let Some(key) = events.next().await {
                        self.enqueue(key);
                    }
                }
                Ok(None) => return,
                Err(err) => {
                    tracing::debug!("cannot follow the events of the {placement} engine (the resync still runs): {err}")
                }
            }
            tokio::time::sleep(EVENTS_RETRY).await;
        }
    }

    /// Enqueues every machine with a record and every labelled container.
    ///
    /// Also forgets which authorized_keys were written: a resync rewrites every machine's file
    /// from the database, so a key a member planted in it lasts until the next resync at most.
    pub async fn resync(&self) {
        lock(&self.inner.keys_written).clear();
        self.enqueue_all().await;
        self.progress_operations().await;
    }

    /// A resync in the background, now (after a host was added or a machine moved), when this
    /// process reconciles.
    pub fn resync_soon(&self) {
        if self.leading() {
            let this = self.clone();
            tokio::spawn(async move { this.resync().await });
        }
    }

    /// Enqueues every machine with a record and every labelled container of this instance on
    /// every registered engine. A machine found on another host than its placement's (it was
    /// moved) is removed from there.
    async fn enqueue_all(&self) {
        let mut keys: HashSet<Key> = HashSet::new();
        let mut placed: HashMap<Key, Placement> = HashMap::new();
        match self.inner.store.all_machines(&system()).await {
            Ok(machines) => {
                keys.extend(machines.iter().map(MachineRecord::key));
                placed.extend(machines.iter().map(|m| (m.key(), m.placement.clone())));
            }
            Err(err) => tracing::error!("resync: cannot read machines: {err}"),
        }
        // An engine lists only this instance's machines.
        for (placement, engine) in self.inner.engines.all() {
            match engine.list_machines(None).await {
                Ok(found) => {
                    for machine in found {
                        // By host only: one host's Docker lists its microVM runners among its
                        // containers too, and those are placed on the same host.
                        if placed.get(&machine.key).is_some_and(|p| p.host != placement.host) {
                            tracing::info!("removing {} from the {placement} engine: it was moved", machine.key);
                            if let Err(err) = engine.remove_machine(&machine.key).await {
                                tracing::warn!(
                                    "cannot remove moved {} from {placement} (next pass): {err}",
                                    machine.key
                                );
                            }
                            continue;
                        }
                        keys.insert(machine.key);
                    }
                }
                Err(err) => tracing::warn!("resync: cannot list machines on the {placement} engine: {err}"),
            }
        }
        for key in keys {
            self.enqueue(key);
        }
    }

    /// Enqueues every machine of a namespace (after its keys or members changed).
    pub async fn resync_namespace(&self, ns: &NamespaceName) {
        if let Ok(machines) = self.inner.store.all_machines(&system()).await {
            for m in machines.iter().filter(|m| &m.namespace == ns) {
                self.enqueue(m.key());
            }
        }
    }

    /// Whether this process reconciles (see `crate::leader`). A reconciler leads unless told
    /// otherwise, as a single flvpc process always does.
    pub fn leading(&self) -> bool {
        self.inner.leading.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Makes this process reconcile, or only record desired state for the leader.
    pub fn set_leading(&self, leading: bool) {
        self.inner.leading.store(leading, std::sync::atomic::Ordering::Release);
        if !leading {
            lock(&self.inner.operations_seen).clear();
        }
    }

    /// Enqueues the targets of the open operations this process has not enqueued yet: those
    /// recorded by other flvpc processes on the same database, which do not reconcile.
    pub async fn pick_up_operations(&self) {
        let Ok(open) = self.inner.store.open_operations(&system()).await else { return };
        let fresh: Vec<Operation> = {
            let mut seen = lock(&self.inner.operations_seen);
            seen.retain(|id| open.iter().any(|op| &op.id == id));
            open.into_iter().filter(|op| !seen.contains(&op.id)).collect()
        };
        for op in &fresh {
            self.enqueue_operation(op);
        }
    }

    /// Enqueues the targets of an operation just recorded.
    pub fn enqueue_operation(&self, op: &Operation) {
        if !self.leading() {
            // The leader process picks it up from the database.
            return;
        }
        lock(&self.inner.operations_seen).insert(op.id.clone());
        for target in &op.targets {
            self.enqueue(MachineKey::new(op.namespace.clone(), target.clone()));
        }
        if op.targets.is_empty() {
            let this = self.clone();
            tokio::spawn(async move { this.progress_operations().await });
        }
    }

    /// Asks for one machine to be reconciled.
    pub fn enqueue(&self, key: Key) {
        if !self.leading() {
            return;
        }
        {
            let mut queue = lock(&self.inner.queue);
            if queue.in_flight.contains(&key) {
                queue.dirty.insert(key);
                return;
            }
            queue.in_flight.insert(key.clone());
        }
        let this = self.clone();
        tokio::spawn(async move { this.run(key).await });
    }

    async fn run(&self, key: Key) {
        loop {
            match self.inner.permits.acquire().await {
                Ok(_permit) => self.reconcile_one(&key).await,
                Err(_) => return,
            }
            self.progress_operations().await;
            let mut queue = lock(&self.inner.queue);
            if !queue.dirty.remove(&key) {
                queue.in_flight.remove(&key);
                return;
            }
        }
    }

    /// Whether any machine is being reconciled (tests wait for quiet).
    pub fn busy(&self) -> bool {
        !lock(&self.inner.queue).in_flight.is_empty()
    }

    fn emit_machine(&self, key: &Key, state: &str, ip: Option<String>, error: Option<String>) {
        let _ = self.inner.events.send(Event::Machine {
            namespace: key.namespace.to_string(),
            name: key.name.to_string(),
            state: state.to_owned(),
            ip,
            error,
        });
    }

    async fn observe(&self, key: &Key, state: Observed, ip: Option<String>, error: Option<String>) {
        if let Err(err) = self.inner.store.set_observed(&system(), key, state, ip.as_deref(), error.as_deref()).await {
            tracing::error!("cannot record the state of {key}: {err}");
        }
        self.emit_machine(key, state.as_str(), ip, error);
    }

    async fn reconcile_one(&self, key: &Key) {
        let record = match self.inner.store.machine(&system(), key).await {
            Ok(record) => record,
            Err(err) => {
                tracing::error!("reconcile {key}: cannot read the database: {err}");
                return;
            }
        };
        let result = match record {
            None => self.remove_orphan(key).await,
            Some(record) => match self.inner.engines.get(&record.placement) {
                None => return self.unplaced(key, &record).await,
                Some(engine) if record.desired == Desired::Deleted => self.delete(key, &engine).await,
                Some(engine) => self.converge(key, &record, &engine).await,
            },
        };
        if let Some(err) = result.as_ref().err().filter(|e| e.is_transient()) {
            // The host does not answer: what its machines do is not known. Never "stopped" (nobody
            // stopped them) and never recreated elsewhere; adopted as they are when it is back.
            let message = format!(
                "its host does not answer ({err}); the machine is left as it is and adopted when the host is back"
            );
            tracing::warn!("reconcile {key}: {message}");
            self.observe(key, Observed::Unknown, None, Some(message)).await;
            return;
        }
        if let Err(err) = result {
            tracing::warn!("reconcile {key}: {err}");
            let message = err.to_string();
            // The record may be gone (an orphan); then there is nothing to write.
            self.observe(key, Observed::Error, None, Some(message)).await;
        }
    }

    /// A machine whose placement names no registered engine: nothing here can act on it. Says
    /// so on the record (once, so a second pass writes nothing), touches no engine, and never
    /// forgets the record, whatever it wants.
    async fn unplaced(&self, key: &Key, record: &MachineRecord) {
        let message = self.inner.engines.missing(&record.placement);
        if record.observed != Observed::Error || record.error.as_deref() != Some(message.as_str()) {
            tracing::warn!("reconcile {key}: {message}");
            self.observe(key, Observed::Error, None, Some(message)).await;
        }
    }

    /// A container of this instance with no record: flvpc made it, nobody wants it (any more).
    /// Without a record there is no placement, so every registered engine is asked. An engine
    /// finds only this instance's containers, so another server's are never touched.
    async fn remove_orphan(&self, key: &Key) -> Result<(), EngineError> {
        // A host that does not answer keeps its orphan until the next pass; the others are
        // still cleaned now.
        let mut unreachable = None;
        for (placement, engine) in self.inner.engines.all() {
            match engine.inspect_machine(key).await {
                Ok(Some(_)) => {
                    tracing::info!("removing {key} from the {placement} engine: a labelled machine without a record");
                    engine.remove_machine(key).await?;
                }
                Ok(None) => {}
                Err(err) if err.is_transient() => unreachable = Some(err),
                Err(err) => return Err(err),
            }
        }
        unreachable.map_or(Ok(()), Err)
    }

    /// Removes the machine, then its namespace network if nothing else needs it, and only then
    /// forgets the record: a failure at any step leaves the record, so the next pass finishes.
    async fn delete(&self, key: &Key, engine: &Arc<dyn Engine>) -> Result<(), EngineError> {
        let ns = &key.namespace;
        match engine.remove_machine(key).await {
            // A container of that name that is not ours: our machine is not there, and the
            // other one is left alone.
            Ok(()) | Err(EngineError::NotOurs { .. }) => {}
            Err(err) => return Err(err),
        }
        lock(&self.inner.keys_written).remove(key);
        // The namespace network goes with the namespace's last machine. Each
        // deleting reconcile removes its own container before it lists, so the last of concurrent
        // ones sees them all gone.
        let others = match self.inner.store.all_machines(&system()).await {
            Ok(all) => {
                // Any host's: with several hosts the namespace network is one overlay, which a
                // stopped machine elsewhere still needs (it holds no endpoint, so Docker would let
                // the network go); on one host, containers and VMs share the bridge.
                all.iter().any(|m| &m.namespace == ns && m.desired != Desired::Deleted)
            }
            Err(err) => {
                tracing::error!("cannot read the machines of {ns} (deleting {key} again at the next pass): {err}");
                return Ok(());
            }
        };
        if !others && engine.list_machines(Some(ns)).await?.is_empty() {
            match engine.remove_network(ns).await {
                Ok(()) => {}
                // Something that is not a machine of this flvpc still uses it: not ours to cut off.
                Err(err @ (EngineError::NetworkInUse { .. } | EngineError::NotOurs { .. })) => {
                    tracing::warn!("leaving the network of {ns}: {err}");
                }
                Err(err) => return Err(err),
            }
        }
        if let Err(err) = self.inner.store.forget_deleted_machine(&system(), key).await {
            tracing::error!("cannot forget {key} (trying again at the next pass): {err}");
            return Ok(());
        }
        self.emit_machine(key, "deleted", None, None);
        Ok(())
    }

    fn machine_spec(&self, key: &Key, record: &MachineRecord) -> MachineSpec {
        let mut spec = MachineSpec::new(key.clone(), record.image.as_str());
        spec.cpus = record.cpus.max(1);
        spec.pids_limit = self.inner.settings.pids_limit;
        spec.cpu_cap = record.cpu_cap_milli.map(|m| f64::from(m) / 1000.0);
        spec.memory_mb = record.memory_mb;
        spec.disk_gb = Some(record.disk_gb).filter(|gb| *gb > 0);
        spec.ports = record
            .ports
            .iter()
            .map(|p| PortMapping {
                container_port: p.container_port,
                host_port: Some(p.host_port),
                protocol: p.protocol,
                address: Some(p.address.unwrap_or(self.inner.settings.publish_address)),
            })
            .collect();
        spec.labels.insert(LABEL_SPEC.into(), record.spec_hash.clone());
        spec
    }

    async fn converge(&self, key: &Key, record: &MachineRecord, engine: &Arc<dyn Engine>) -> Result<(), EngineError> {
        let mut actual = engine.inspect_machine(key).await?;
        let mut created = false;
        if actual.as_ref().is_some_and(|a| a.info.labels.get(LABEL_SPEC) != Some(&record.spec_hash)) {
            tracing::info!("recreating {key}: its settings changed");
            engine.remove_machine(key).await?;
            lock(&self.inner.keys_written).remove(key);
            actual = None;
        }
        if actual.is_none() {
            if record.desired == Desired::Stopped {
                self.observe_change(key, record, Observed::NotCreated, None, None).await;
                return Ok(());
            }
            // A new container has no keys, whatever was written to an earlier one.
            lock(&self.inner.keys_written).remove(key);
            // Recording "creating" need not hold up the engine (both end before anything else
            // is recorded, so the states stay in order).
            let ((), network) =
                tokio::join!(self.observe(key, Observed::Creating, None, None), engine.ensure_network(&key.namespace));
            network?;
            // Only a machine that should run gets here (a stopped one is not created): created
            // and started in one step, as `docker run` does.
            engine.create_and_start_machine(&self.machine_spec(key, record)).await?;
            created = true;
        }
        let restart = record.restart_op.as_deref();
        let state = actual.as_ref().map(|a| a.info.state);
        let stop_timeout = self.inner.settings.stop_timeout;
        // A VM still booting counts as started; one that failed to boot is started again only
        // by a restart (starting it at every resync would boot it again and again).
        let started = matches!(state, Some(MachineState::Running | MachineState::Starting | MachineState::Failed));
        let acted = match record.desired {
            // Just created and started: a pending restart is thereby done too.
            _ if created => true,
            Desired::Running if restart.is_some() && started => {
                engine.restart_machine(key, stop_timeout).await?;
                true
            }
            Desired::Running if !started => {
                engine.start_machine(key).await?;
                true
            }
            Desired::Stopped if state.is_some_and(|s| s != MachineState::Stopped && s != MachineState::Created) => {
                engine.stop_machine(key, stop_timeout).await?;
                true
            }
            _ => false,
        };
        // Running now, and (re)started in this pass unless it was running without a restart
        // pending: a pending restart is done (a stopped machine keeps it until it starts).
        if let (Desired::Running, Some(op)) = (record.desired, restart) {
            if let Err(err) = self.inner.store.restart_done(&system(), key, op).await {
                // The request stays, so the machine is restarted once more: better than never.
                tracing::error!("cannot record that {key} restarted for {op}: {err}");
            }
        }
        // What the engine said before this pass is still true when the pass changed nothing
        // (the usual resync of a settled machine): one inspect per machine and pass, not two.
        let details = match actual {
            Some(before) if !acted => Some(before),
            _ => engine.inspect_machine(key).await?,
        };
        // The keys go in once the machine is as wanted, into the container just inspected (no
        // second lookup): a new machine is started first and its keys follow, as `docker cp`
        // follows `docker run`, into a mounted file system and before its sshd has booted
        // (issue 9: the create path of one machine was 1.7x plain Docker's).
        if let Some(details) = details.as_ref() {
            self.write_keys(key, engine, details).await?;
        }
        let (observed, ip, mut error) = describe(details.as_ref());
        if error.is_none() && details.as_ref().is_some_and(lacks_isolation) {
            // Recreating would lose what the tenant has in the machine: say so instead, loudly.
            tracing::warn!("{key} was created by an older flvpc without cgroup isolation: recreate it");
            error = Some(OLD_ISOLATION.to_owned());
        }
        self.observe_change(key, record, observed, ip, error).await;
        Ok(())
    }

    /// Records what was observed, unless the record already says exactly that: a resync of
    /// settled machines then writes nothing. An error is written again every time, because its
    /// time tells operations started since that the machine is still failing.
    async fn observe_change(
        &self,
        key: &Key,
        record: &MachineRecord,
        state: Observed,
        ip: Option<String>,
        error: Option<String>,
    ) {
        if state != Observed::Error && record.observed == state && record.ip == ip && record.error == error {
            self.emit_machine(key, state.as_str(), ip, error);
            return;
        }
        self.observe(key, state, ip, error).await;
    }

    /// Writes the namespace members' keys to the machine, whole, unless the same content was
    /// written since the last resync (which forgets what was written, see [`Self::resync`]).
    ///
    /// `inspected`: the machine as this pass last inspected it; the keys go to that container
    /// without a second lookup.
    async fn write_keys(
        &self,
        machine: &Key,
        engine: &Arc<dyn Engine>,
        inspected: &MachineDetails,
    ) -> Result<(), EngineError> {
        let ns = &machine.namespace;
        let keys = match self.inner.store.namespace_keys(&system(), ns).await {
            Ok(keys) => keys,
            Err(err) => {
                // Never write an empty file because the database hiccuped.
                tracing::error!("cannot read the keys of {ns}: {err}");
                return Ok(());
            }
        };
        let mut content = String::from(
            "# Managed by flvpc: the SSH keys of this namespace's members. Changes here are overwritten.\n",
        );
        for key in &keys {
            content.push_str(key);
            content.push('\n');
        }
        if let Some(line) = &self.inner.settings.terminal_key {
            // The panel's browser terminal signs in with this key (crate::terminal): members reach
            // the machine through the panel as they would with their own keys.
            content.push_str("# flvpc-panel-terminal: the server's key for the panel's browser terminal.\n");
            content.push_str(line);
            content.push('\n');
        }
        if lock(&self.inner.keys_written).get(machine) == Some(&content) {
            return Ok(());
        }
        engine.write_authorized_keys_to(inspected, &content).await?;
        lock(&self.inner.keys_written).insert(machine.clone(), content);
        Ok(())
    }

    /// Recomputes the progress of every open operation from the machines' observed state.
    pub async fn progress_operations(&self) {
        let _serial = self.inner.ops_lock.lock().await;
        let sys = system();
        let Ok(open) = self.inner.store.open_operations(&sys).await else { return };
        if open.is_empty() {
            return;
        }
        let Ok(machines) = self.inner.store.all_machines(&sys).await else { return };
        for op in open {
            let mut done = 0i64;
            let mut failure = None;
            for target in &op.targets {
                let record = machines.iter().find(|m| m.namespace == op.namespace && &m.name == target);
                let reached = match (op.goal.as_str(), record) {
                    (_, Some(m)) if m.observed == Observed::Error && m.observed_at >= op.created_at => {
                        failure = Some(format!("{}: {}", m.name, m.error.clone().unwrap_or_else(|| "failed".into())));
                        false
                    }
                    ("deleted", None) => true,
                    ("apply", None) => true,
                    ("apply", Some(m)) => m.desired == Desired::Running && m.observed == Observed::Running,
                    ("running", Some(m)) => m.observed == Observed::Running,
                    ("stopped", Some(m)) => m.observed == Observed::Stopped || m.observed == Observed::NotCreated,
                    // Done once no restart is pending (a newer request includes this one).
                    ("restart", Some(m)) => m.restart_op.is_none() && m.observed == Observed::Running,
                    (_, None) => true,
                    _ => false,
                };
                if reached {
                    done += 1;
                }
            }
            let state = if failure.is_some() {
                OperationState::Failed
            } else if done >= op.total {
                OperationState::Succeeded
            } else {
                OperationState::Running
            };
            if state != op.state || done != op.done {
                if let Err(err) = self.inner.store.update_operation(&sys, &op.id, state, done, failure.as_deref()).await
                {
                    tracing::error!("cannot record progress of {}: {err}", op.id);
                    continue;
                }
                let _ = self.inner.events.send(Event::Operation {
                    namespace: op.namespace.to_string(),
                    id: op.id.clone(),
                    kind: op.kind.clone(),
                    state: state.as_str().to_owned(),
                    done,
                    total: op.total,
                    error: failure,
                });
            }
        }
    }
}

/// Shown on machines made before the cgroup isolation, until they are recreated.
const OLD_ISOLATION: &str = "this machine was created by an older flvpc whose containers could write the host's \
     cgroups: recreate it (delete and create the cluster, or change its spec and apply) to isolate it";

fn lacks_isolation(details: &MachineDetails) -> bool {
    details.info.labels.get(flvpc_host::LABEL_ISOLATION).map(String::as_str) != Some(flvpc_host::ISOLATION)
}

/// The machine object's state, IP and error from what the engine reports.
fn describe(details: Option<&MachineDetails>) -> (Observed, Option<String>, Option<String>) {
    match details {
        None => (Observed::NotCreated, None, None),
        Some(d) => match d.info.state {
            MachineState::Running => (Observed::Running, d.info.ip.clone(), None),
            // A VM booting, or a container restarted by Docker: not up yet.
            MachineState::Restarting | MachineState::Starting => (Observed::Creating, None, None),
            // A VM that did not boot: its error says why; it waits for a restart.
            MachineState::Failed => (
                Observed::Error,
                None,
                Some(d.error.clone().filter(|e| !e.is_empty()).unwrap_or_else(|| "the machine failed".to_owned())),
            ),
            MachineState::Created | MachineState::Stopped | MachineState::Paused => match &d.error {
                Some(error) if !error.is_empty() => (Observed::Error, None, Some(error.clone())),
                _ => (Observed::Stopped, None, None),
            },
            MachineState::Removing | MachineState::Dead | MachineState::Unknown => {
                (Observed::Error, None, Some(format!("the engine reports the machine as {}", d.info.state)))
            }
        },
    }
}
