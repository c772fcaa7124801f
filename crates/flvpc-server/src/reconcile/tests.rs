//! The reconciler against the recording fake engine and a real SQLite store in a temp dir:
//! convergence from every mix of desired and actual state, idempotence, one reconcile in
//! flight per machine, a failure at any engine step, and restarts that survive flvpc's own
//! restart. No Docker, no sleeps beyond a millisecond: the whole file runs in well under a second.

use super::*;
use flvpc_host::fake::{Call, FAKE_INSTANCE};
use flvpc_host::{FakeEngine, DEFAULT_IMAGE};
use flvpc_model::quota::HostCaps;
use flvpc_model::spec::{Backend, Protocol};
use flvpc_model::{Login, MachineName, Principal};
use flvpc_store::{MachinePlan, PortRange};
use std::collections::BTreeMap;

mod engines;

const HASH: &str = "spec-1";

/// What the database wants of the scenario's one machine `m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Running,
    /// Running, with a restart requested.
    Restart,
    Stopped,
    Deleted,
    /// No record at all.
    Nothing,
}

/// What the engine has for `m` before the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Have {
    Missing,
    Created,
    Running,
    Stopped,
    /// A container of that name made by another flvpc instance.
    Foreign,
    /// Ours, made from other settings (another spec hash).
    Changed,
}

const WANTS: [Want; 5] = [Want::Running, Want::Restart, Want::Stopped, Want::Deleted, Want::Nothing];
const HAVES: [Have; 6] = [Have::Missing, Have::Created, Have::Running, Have::Stopped, Have::Foreign, Have::Changed];

struct World {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    fake: Arc<FakeEngine>,
    rec: Reconciler,
    root: Principal,
}

fn reconciler(store: &Arc<Store>, fake: &Arc<FakeEngine>) -> Reconciler {
    let settings = Settings { instance: FAKE_INSTANCE.into(), ..Settings::default() };
    Reconciler::new(store.clone(), fake.clone(), settings)
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("flvpc.db").display());
    let store = Arc::new(Store::open(&url).await.expect("open store"));
    let fake = Arc::new(FakeEngine::new());
    let rec = reconciler(&store, &fake);
    let root = Principal::new(1, Login::parse("root").expect("login"), true, BTreeMap::new());
    World { _dir: dir, store, fake, rec, root }
}

fn ns(name: &str) -> NamespaceName {
    NamespaceName::parse(name).expect("namespace")
}

fn machine(namespace: &str) -> Key {
    MachineKey::parse(namespace, "m").expect("key")
}

fn plan() -> MachinePlan {
    MachinePlan {
        name: MachineName::parse("m").expect("name"),
        image: DEFAULT_IMAGE.into(),
        backend: Backend::Docker,
        placement: Placement::default(),
        pin: None,
        group: "m".into(),
        cpus: 1,
        cpu_cap_milli: None,
        memory_mb: 256,
        disk_gb: 1,
        spec_hash: HASH.into(),
        ports: Vec::new(),
    }
}

impl World {
    /// Records `want` for machine `m` of a new namespace (an apply; then stop, delete or restart).
    async fn record(&self, namespace: &str, want: Want) -> Option<Operation> {
        let n = ns(namespace);
        let superadmin = self.root.superadmin().expect("superadmin");
        self.store.create_namespace(&superadmin, &n).await.expect("namespace");
        if want == Want::Nothing {
            return None;
        }
        let admin = self.root.namespace_admin(&n).expect("admin");
        let member = self.root.namespace_member(&n).expect("member");
        let caps = HostCaps::default();
        let range = PortRange { first: 40000, last: 40099 };
        let free = |_: &flvpc_model::HostName, _: Option<IpAddr>, _: u16, _: Protocol| true;
        let by = self.root.login();
        self.store.apply_cluster(&admin, &[plan()], &[], &caps, range, &free, None, by).await.expect("apply");
        match want {
            Want::Stopped => {
                self.store.set_desired(&member, None, Desired::Stopped, &caps, "k", by).await.expect("stop");
                None
            }
            Want::Deleted => {
                self.store.apply_cluster(&admin, &[], &[], &caps, range, &free, None, by).await.expect("delete");
                None
            }
            Want::Restart => Some(self.restart(namespace).await),
            _ => None,
        }
    }

    async fn restart(&self, namespace: &str) -> Operation {
        let member = self.root.namespace_member(&ns(namespace)).expect("member");
        let caps = HostCaps::default();
        let m = machine(namespace).name;
        self.store.request_restart(&member, &m, &caps, "machine.restart", self.root.login()).await.expect("restart")
    }

    /// Puts `have` on the engine for machine `m` of `namespace`, behind the reconciler's back.
    async fn plant(&self, namespace: &str, have: Have) {
        let key = machine(namespace);
        if have == Have::Foreign {
            self.fake.add_foreign_machine(&key, "another-flvpc", MachineState::Running);
            return;
        }
        if have == Have::Missing {
            return;
        }
        let mut spec = MachineSpec::new(key.clone(), DEFAULT_IMAGE);
        spec.memory_mb = 256;
        let hash = if have == Have::Changed { "spec-0" } else { HASH };
        spec.labels.insert(LABEL_SPEC.into(), hash.into());
        self.fake.ensure_network(&key.namespace).await.expect("network");
        self.fake.create_machine(&spec).await.expect("create");
        match have {
            Have::Running | Have::Changed => self.fake.set_state(&key, MachineState::Running),
            Have::Stopped => self.fake.set_state(&key, MachineState::Stopped),
            _ => {}
        }
    }

    async fn scenario(&self, namespace: &str, want: Want, have: Have) -> Option<Operation> {
        let op = self.record(namespace, want).await;
        self.plant(namespace, have).await;
        op
    }

    /// One pass: every machine with a record or a container reconciled once, until quiet.
    /// (Unlike [`Reconciler::resync`] it keeps the cache of written keys.)
    async fn pass(&self) {
        self.rec.enqueue_all().await;
        settle(&self.rec).await;
    }

    async fn record_of(&self, namespace: &str) -> Option<MachineRecord> {
        self.store.machine(&system(), &machine(namespace)).await.expect("read record")
    }

    /// Everything about the scenario's machine that a pass may change, without the namespace's
    /// name (so that scenarios in different namespaces compare).
    async fn snapshot(&self, namespace: &str) -> String {
        let key = machine(namespace);
        let ours = self.fake.list_machines(Some(&key.namespace)).await.expect("list").iter().any(|m| m.key == key);
        let container = self.fake.state_of(&key).map(|state| {
            let label = self.fake.spec(&key).and_then(|s| s.labels.get(LABEL_SPEC).cloned());
            let keys = self.fake.authorized_keys(&key).is_some();
            format!("{state} ours={ours} spec={label:?} keys={keys} boots={}", self.fake.boots(&key))
        });
        let network = self.fake.networks().contains(&key.namespace);
        let record = self.record_of(namespace).await.map(|r| {
            format!(
                "{} {} error={} restart={}",
                r.desired.as_str(),
                r.observed,
                r.error.is_some(),
                r.restart_op.is_some()
            )
        });
        format!("container={container:?} network={network} record={record:?}")
    }
}

/// Waits until no reconcile is in flight (bounded: a stuck reconciler fails the test).
async fn settle(rec: &Reconciler) {
    for _ in 0..20_000 {
        if !rec.busy() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the reconciler did not become quiet");
}

fn scenario_name(i: usize, want: Want, have: Have) -> String {
    format!("s{i}-{want:?}-{have:?}").to_lowercase()
}

fn scenarios() -> Vec<(String, Want, Have)> {
    let mut all = Vec::new();
    for want in WANTS {
        for have in HAVES {
            all.push((scenario_name(all.len(), want, have), want, have));
        }
    }
    all
}

/// What one pass must leave, checked field by field.
async fn assert_converged(w: &World, namespace: &str, want: Want, have: Have) {
    let key = machine(namespace);
    let what = format!("{want:?} × {have:?}: {}", w.snapshot(namespace).await);
    let state = w.fake.state_of(&key);
    let record = w.record_of(namespace).await;
    if have == Have::Foreign {
        // Another instance's container is never touched, whatever the record says.
        assert_eq!(state, Some(MachineState::Running), "{what}");
        assert_eq!(w.fake.boots(&key), 0, "{what}");
        assert!(w.fake.list_machines(None).await.expect("list").iter().all(|m| m.key != key), "{what}");
        match want {
            Want::Running | Want::Restart | Want::Stopped => {
                let record = record.expect("record stays");
                assert_eq!(record.observed.as_str(), "error", "{what}");
                assert!(record.error.as_deref().is_some_and(|e| e.contains("not created by flvpc")), "{what}");
            }
            // Our machine is not there: the record of a deleted one goes.
            Want::Deleted | Want::Nothing => assert!(record.is_none(), "{what}"),
        }
        return;
    }
    match want {
        Want::Running | Want::Restart => {
            let record = record.expect("record");
            assert_eq!(state, Some(MachineState::Running), "{what}");
            assert_eq!(record.observed.as_str(), "running", "{what}");
            assert_eq!(record.restart_op, None, "{what}");
            let spec = w.fake.spec(&key).expect("spec");
            assert_eq!(spec.labels.get(LABEL_SPEC).map(String::as_str), Some(HASH), "{what}");
            assert!(w.fake.authorized_keys(&key).is_some_and(|k| k.starts_with("# Managed by flvpc")), "{what}");
            // A restart of a running machine is a restart; otherwise the start is the restart.
            let boots = match (want, have) {
                (Want::Restart, Have::Running) => 1,
                (_, Have::Running) => 0,
                _ => 1,
            };
            assert_eq!(w.fake.boots(&key), boots, "{what}");
        }
        Want::Stopped => {
            let record = record.expect("record");
            let (expected, observed) = match have {
                Have::Missing | Have::Changed => (None, "not_created"),
                Have::Created => (Some(MachineState::Created), "stopped"),
                _ => (Some(MachineState::Stopped), "stopped"),
            };
            assert_eq!(state, expected, "{what}");
            assert_eq!(record.observed.as_str(), observed, "{what}");
            assert_eq!(w.fake.boots(&key), 0, "{what}");
        }
        Want::Deleted => {
            assert_eq!(state, None, "{what}");
            assert!(record.is_none(), "{what}");
            assert!(!w.fake.networks().contains(&key.namespace), "the network goes with the last machine: {what}");
        }
        // A labelled container of this instance without a record is removed.
        Want::Nothing => assert_eq!(state, None, "{what}"),
    }
}

#[tokio::test]
async fn one_pass_converges_from_every_mix_and_a_second_changes_nothing() {
    let w = world().await;
    let all = scenarios();
    let mut restarts = Vec::new();
    for (namespace, want, have) in &all {
        if let Some(op) = w.scenario(namespace, *want, *have).await {
            restarts.push((op, *have));
        }
    }
    // A labelled container of another instance whose machine has no record here at all.
    let stranger = MachineKey::parse("elsewhere", "x").expect("key");
    w.fake.add_foreign_machine(&stranger, "another-flvpc", MachineState::Stopped);
    w.fake.take_calls();

    w.pass().await;
    for (namespace, want, have) in &all {
        assert_converged(&w, namespace, *want, *have).await;
    }
    assert_eq!(w.fake.state_of(&stranger), Some(MachineState::Stopped), "another instance's machine is left alone");
    let touched: Vec<Call> =
        w.fake.calls().into_iter().filter(|c| c.namespace() == Some(&stranger.namespace)).collect();
    assert!(touched.is_empty(), "{touched:?}");

    // Level-triggered and idempotent: the same world again needs no change at all.
    w.fake.take_calls();
    w.pass().await;
    assert_eq!(w.fake.mutations(), Vec::<Call>::new());
    // The periodic resync rewrites every machine's keys on purpose (nothing planted there
    // outlives it), and does nothing else.
    w.fake.take_calls();
    w.rec.resync().await;
    settle(&w.rec).await;
    let mutations = w.fake.mutations();
    assert!(!mutations.is_empty());
    assert!(mutations.iter().all(|c| matches!(c, Call::WriteAuthorizedKeys(..))), "{mutations:?}");

    // Every restart operation succeeded, computed from the records; the one whose machine's
    // name is taken by another instance's container failed, saying so.
    assert_eq!(restarts.len(), HAVES.len());
    for (op, have) in restarts {
        let op = w.store.operation(&w.root, &op.id).await.expect("operation");
        if have == Have::Foreign {
            assert_eq!(op.state.as_str(), "failed", "{op:?}");
            assert!(op.error.as_deref().is_some_and(|e| e.contains("not created by flvpc")), "{op:?}");
        } else {
            assert_eq!((op.state.as_str(), op.done), ("succeeded", 1), "{have:?}: {op:?}");
        }
    }
}

#[tokio::test]
async fn a_failure_at_any_engine_step_converges_to_the_same_result() {
    // Baseline: each scenario once, in a namespace of its own, without failures.
    let base = world().await;
    let all = scenarios();
    for (namespace, want, have) in &all {
        base.scenario(namespace, *want, *have).await;
    }
    base.fake.take_calls();
    base.pass().await;
    let calls = base.fake.take_calls();
    let mut expected = Vec::new();
    for (namespace, ..) in &all {
        let steps = calls.iter().filter(|c| c.namespace() == Some(&ns(namespace))).count();
        expected.push((steps, base.snapshot(namespace).await));
    }

    // Every step of every scenario broken in turn: the k-th engine call of the namespace fails.
    let w = world().await;
    let mut cases = Vec::new();
    for (i, (_, want, have)) in all.iter().enumerate() {
        for k in 0..expected[i].0 {
            let namespace = format!("c{i}-{k}");
            w.scenario(&namespace, *want, *have).await;
            let error = EngineError::Docker { action: format!("step {k}"), detail: "injected".into() };
            w.fake.fail_nth_in(&ns(&namespace), k, error);
            cases.push((namespace, i, k));
        }
    }
    assert!(cases.len() > all.len(), "every scenario has steps to break");
    w.pass().await;
    // Then a clean pass (as the next resync, or flvpc started again, would run).
    w.pass().await;
    for (namespace, i, k) in &cases {
        let (want, have) = (all[*i].1, all[*i].2);
        assert_eq!(w.snapshot(namespace).await, expected[*i].1, "{want:?} × {have:?}, step {k} failed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reconcile_in_flight_per_machine() {
    let w = world().await;
    for (namespace, want) in [("a", Want::Running), ("b", Want::Restart)] {
        w.scenario(namespace, want, Have::Running).await;
    }
    // Each engine call takes a millisecond, so overlapping reconciles would overlap calls.
    w.fake.set_call_delay(Duration::from_millis(1));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let rec = w.rec.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                rec.enqueue(machine("a"));
                rec.enqueue(machine("b"));
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("enqueuer");
    }
    settle(&w.rec).await;
    assert_eq!(w.fake.most_calls_in_flight_on_one_machine(), 1);
    // 400 requests coalesced into a few reconciles, and the restart happened once.
    let inspections = w.fake.calls().iter().filter(|c| matches!(c, Call::InspectMachine(..))).count();
    assert!((2..400).contains(&inspections), "{inspections} inspections");
    assert_eq!(w.fake.boots(&machine("b")), 1);
    assert_eq!(w.record_of("b").await.expect("b").restart_op, None);

    // The counter does see overlap: two calls on one machine at once count 2.
    let (f1, f2) = (w.fake.clone(), w.fake.clone());
    let key = machine("a");
    let (r1, r2) = tokio::join!(f1.inspect_machine(&key), f2.inspect_machine(&key));
    assert!(r1.is_ok() && r2.is_ok());
    assert_eq!(w.fake.most_calls_in_flight_on_one_machine(), 2);
}

#[tokio::test]
async fn a_restart_requested_before_flvpc_restarted_happens_exactly_once() {
    let w = world().await;
    w.scenario("r", Want::Running, Have::Missing).await;
    w.pass().await;
    let key = machine("r");
    assert_eq!(w.fake.boots(&key), 1);

    let op = w.restart("r").await;
    assert_eq!(w.record_of("r").await.expect("record").restart_op.as_deref(), Some(op.id.as_str()));
    // Progress comes from the database: the request is pending, so the operation is not done.
    w.rec.progress_operations().await;
    let open = w.store.open_operations(&system()).await.expect("open");
    assert!(open.iter().any(|o| o.id == op.id), "{open:?}");

    // flvpc "restarts" before the reconciler acted: a new reconciler over the same store.
    let again = reconciler(&w.store, &w.fake);
    again.enqueue_all().await;
    settle(&again).await;
    assert_eq!(w.fake.boots(&key), 2, "restarted");
    assert!(w.fake.calls().iter().any(|c| matches!(c, Call::RestartMachine(k, _) if k == &key)));
    let done = w.store.operation(&w.root, &op.id).await.expect("operation");
    assert_eq!((done.state.as_str(), done.done, done.total), ("succeeded", 1, 1), "{done:?}");

    // Exactly once: neither the new nor a third reconciler restarts it again.
    again.enqueue_all().await;
    settle(&again).await;
    let third = reconciler(&w.store, &w.fake);
    third.enqueue_all().await;
    settle(&third).await;
    assert_eq!(w.fake.boots(&key), 2, "restarted once");
}

#[tokio::test]
async fn a_failed_restart_is_retried_and_a_newer_request_is_kept() {
    let w = world().await;
    w.scenario("p", Want::Running, Have::Running).await;
    w.pass().await;
    let key = machine("p");
    // Asked while the engine refuses to restart: the request stays until a pass succeeds.
    let op = w.restart("p").await;
    w.fake.fail_next(
        flvpc_host::fake::Op::RestartMachine,
        EngineError::Docker { action: "restart".into(), detail: "injected".into() },
    );
    w.pass().await;
    assert_eq!(w.fake.boots(&key), 0);
    assert_eq!(w.record_of("p").await.expect("p").restart_op.as_deref(), Some(op.id.as_str()));
    w.pass().await;
    assert_eq!(w.fake.boots(&key), 1, "the request outlived the failure");
    assert_eq!(w.record_of("p").await.expect("p").restart_op, None);

    // Behind flvpc's back the container is removed: recreated, started, and given its keys again.
    w.fake.forget_machine(&key);
    w.pass().await;
    assert_eq!(w.fake.state_of(&key), Some(MachineState::Running));
    assert!(w.fake.authorized_keys(&key).is_some(), "a recreated machine gets its keys");

    // A newer request made while one is pending is not lost when the older one is done.
    let first = w.restart("p").await;
    let second = w.restart("p").await;
    w.store.restart_done(&system(), &key, &first.id).await.expect("done");
    assert_eq!(w.record_of("p").await.expect("p").restart_op.as_deref(), Some(second.id.as_str()));
    let before = w.fake.boots(&key);
    w.pass().await;
    assert_eq!(w.fake.boots(&key), before + 1);
    for id in [&first.id, &second.id] {
        assert_eq!(w.store.operation(&w.root, id).await.expect("op").state.as_str(), "succeeded");
    }
}

/// The resync of a settled machine is cheap (issue 9: idle cost at 200 machines): one inspect,
/// the authorized_keys rewrite it owes the invariant, and no database write. A machine in error
/// is written again at every pass, since operations started later read its time.
#[tokio::test]
async fn a_settled_machine_costs_one_inspect_and_no_write_per_resync() {
    let w = world().await;
    w.scenario("quiet", Want::Running, Have::Missing).await;
    w.scenario("failing", Want::Running, Have::Foreign).await;
    w.pass().await;
    let quiet = w.record_of("quiet").await.expect("record");
    let failing = w.record_of("failing").await.expect("record");
    assert_eq!((quiet.observed, failing.observed), (Observed::Running, Observed::Error));
    // Times are in milliseconds: a write after this pause would show in observed_at.
    tokio::time::sleep(Duration::from_millis(3)).await;
    w.fake.take_calls();
    w.rec.resync().await;
    settle(&w.rec).await;

    let key = machine("quiet");
    let calls: Vec<Call> = w.fake.take_calls().into_iter().filter(|c| c.namespace() == Some(&key.namespace)).collect();
    let inspects = calls.iter().filter(|c| matches!(c, Call::InspectMachine(_))).count();
    assert_eq!(inspects, 1, "{calls:?}");
    assert!(calls.iter().any(|c| matches!(c, Call::WriteAuthorizedKeys(..))), "keys rewritten: {calls:?}");
    let others = calls.iter().filter(|c| !matches!(c, Call::InspectMachine(_) | Call::WriteAuthorizedKeys(..)));
    assert_eq!(others.count(), 0, "the keys are the resync's only change: {calls:?}");
    let after = w.record_of("quiet").await.expect("record");
    assert_eq!((after.observed, after.observed_at), (Observed::Running, quiet.observed_at), "nothing written");
    let failing_after = w.record_of("failing").await.expect("record");
    assert_eq!(failing_after.observed, Observed::Error);
    assert!(failing_after.observed_at > failing.observed_at, "an error is written again");
}

/// A machine that failed by itself (a VM that did not boot) is shown as an error and is not
/// started again by a resync (that would boot it again and again); a restart boots it again. A
/// machine still starting (a VM booting) is left alone and shown as creating.
#[tokio::test]
async fn a_failed_machine_waits_for_a_restart_and_a_starting_one_is_left_alone() {
    let w = world().await;
    w.scenario("f", Want::Running, Have::Missing).await;
    w.pass().await;
    let key = machine("f");
    assert_eq!(w.fake.boots(&key), 1);

    w.fake.set_state(&key, MachineState::Starting);
    w.pass().await;
    assert_eq!(w.fake.boots(&key), 1, "a machine still starting is not started again");
    assert_eq!(w.record_of("f").await.expect("record").observed, flvpc_model::Observed::Creating);

    w.fake.set_state(&key, MachineState::Failed);
    w.pass().await;
    w.pass().await;
    assert_eq!(w.fake.boots(&key), 1, "a failed machine is not started by a resync");
    let record = w.record_of("f").await.expect("record");
    assert_eq!(record.observed, flvpc_model::Observed::Error);
    assert!(record.error.is_some_and(|e| !e.is_empty()), "a failed machine says why");

    w.restart("f").await;
    w.pass().await;
    assert_eq!(w.fake.boots(&key), 2, "a restart boots it again");
    assert_eq!(w.fake.state_of(&key), Some(MachineState::Running));
}

/// The server's browser-terminal key is written with the members' keys, in every machine's file,
/// and only when the server has one.
#[tokio::test]
async fn the_terminal_key_is_appended_to_every_machines_keys() {
    let mut w = world().await;
    let line =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDx5zEXAMPLEKEYxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx flvpc-panel-terminal";
    let settings = Settings { instance: FAKE_INSTANCE.into(), terminal_key: Some(line.into()), ..Settings::default() };
    w.rec = Reconciler::new(w.store.clone(), w.fake.clone(), settings);
    w.scenario("t", Want::Running, Have::Missing).await;
    w.pass().await;
    let keys = w.fake.authorized_keys(&machine("t")).expect("keys written");
    assert!(keys.starts_with("# Managed by flvpc"), "{keys}");
    assert!(keys.lines().any(|l| l == line), "the terminal key is a line of its own: {keys}");

    let plain = world().await;
    plain.scenario("u", Want::Running, Have::Missing).await;
    plain.pass().await;
    let keys = plain.fake.authorized_keys(&machine("u")).expect("keys written");
    assert!(!keys.contains("flvpc-panel-terminal"), "no terminal key without a terminal: {keys}");
}
