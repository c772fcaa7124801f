//! The reconciler over several engines: each machine goes to the engine its placement names,
//! a placement with no engine is an error on the record and nothing else, and resync and events
//! cover every registered engine. Fakes only, in milliseconds.

use super::*;
use async_trait::async_trait;
use flvpc_host::{MachineEvents, MachineInfo};
use flvpc_model::{EngineKind, HostName};
use tokio::sync::mpsc;

/// The machine a call acts on, if it acts on one.
fn call_machine(call: &Call) -> Option<&MachineKey> {
    match call {
        Call::CreateMachine(spec) => Some(&spec.key),
        Call::StartMachine(key)
        | Call::StopMachine(key, _)
        | Call::RestartMachine(key, _)
        | Call::RemoveMachine(key)
        | Call::InspectMachine(key)
        | Call::WriteAuthorizedKeys(key, _) => Some(key),
        _ => None,
    }
}

/// Records machines `names` of namespace `namespace`, each placed as given.
async fn record_placed(w: &World, namespace: &str, machines: &[(&str, Placement)]) {
    let n = ns(namespace);
    w.store.create_namespace(&w.root.superadmin().expect("superadmin"), &n).await.expect("namespace");
    let plans: Vec<MachinePlan> = machines
        .iter()
        .map(|(name, placement)| MachinePlan {
            name: MachineName::parse(name).expect("name"),
            placement: placement.clone(),
            ..plan()
        })
        .collect();
    let admin = w.root.namespace_admin(&n).expect("admin");
    let free = |_: &flvpc_model::HostName, _: Option<IpAddr>, _: u16, _: Protocol| true;
    let range = PortRange { first: 40000, last: 40099 };
    w.store
        .apply_cluster(&admin, &plans, &[], &HostCaps::default(), range, &free, None, w.root.login())
        .await
        .expect("apply");
}

#[tokio::test]
async fn two_engines_each_get_only_their_machines() {
    let w = world().await;
    // A second engine (a fake standing for the microVM engine of the next issue) next to the
    // container engine, both on the local host.
    let vms = Arc::new(FakeEngine::new());
    let container = Placement::default();
    let microvm = Placement::new(HostName::local(), EngineKind::MicroVm);
    let engines = Engines::new().with(container.clone(), w.fake.clone()).with(microvm.clone(), vms.clone());
    let settings = Settings { instance: FAKE_INSTANCE.into(), ..Settings::default() };
    let rec = Reconciler::with_engines(w.store.clone(), engines, settings);
    record_placed(&w, "two", &[("a", container.clone()), ("b", microvm.clone()), ("c", container)]).await;
    let key = |name: &str| MachineKey::parse("two", name).expect("key");

    rec.enqueue_all().await;
    settle(&rec).await;
    for (engine, mine, theirs) in [(&w.fake, vec!["a", "c"], "b"), (&vms, vec!["b"], "a")] {
        for name in &mine {
            assert_eq!(engine.state_of(&key(name)), Some(MachineState::Running), "{name}");
            assert!(engine.authorized_keys(&key(name)).is_some(), "{name}");
        }
        assert_eq!(engine.state_of(&key(theirs)), None);
        let calls = engine.calls();
        let strangers: Vec<&Call> =
            calls.iter().filter(|c| call_machine(c).is_some_and(|k| !mine.contains(&k.name.as_str()))).collect();
        assert!(strangers.is_empty(), "an engine was called for another engine's machine: {strangers:?}");
        // Each engine has the namespace's network for its own machines.
        assert!(engine.networks().contains(&ns("two")));
    }
    for name in ["a", "b", "c"] {
        let record = w.store.machine(&system(), &key(name)).await.expect("read").expect("record");
        assert_eq!((record.observed, record.error), (Observed::Running, None), "{name}");
    }

    // Level-triggered over both engines: a second pass changes nothing on either.
    w.fake.take_calls();
    vms.take_calls();
    rec.enqueue_all().await;
    settle(&rec).await;
    assert_eq!(w.fake.mutations(), Vec::<Call>::new());
    assert_eq!(vms.mutations(), Vec::<Call>::new());

    // The resync covers every engine: a labelled machine without a record on the second engine
    // is found by that engine's listing and removed there.
    let stray = MachineKey::parse("two", "stray").expect("key");
    let mut spec = MachineSpec::new(stray.clone(), DEFAULT_IMAGE);
    spec.labels.insert(LABEL_SPEC.into(), HASH.into());
    vms.create_machine(&spec).await.expect("plant");
    rec.resync().await;
    settle(&rec).await;
    assert_eq!(vms.state_of(&stray), None, "the orphan on the second engine is removed");
    assert_eq!(vms.state_of(&key("b")), Some(MachineState::Running));

    // Deleting a machine of one engine leaves the other engine's machines and network alone.
    let n = ns("two");
    let admin = w.root.namespace_admin(&n).expect("admin");
    let free = |_: &flvpc_model::HostName, _: Option<IpAddr>, _: u16, _: Protocol| true;
    let range = PortRange { first: 40000, last: 40099 };
    let keep = [MachinePlan { name: MachineName::parse("a").expect("name"), ..plan() }];
    w.store
        .apply_cluster(&admin, &keep, &[], &HostCaps::default(), range, &free, None, w.root.login())
        .await
        .expect("apply");
    w.fake.take_calls();
    rec.enqueue_all().await;
    settle(&rec).await;
    assert_eq!(vms.state_of(&key("b")), None);
    // The namespace network stays while the namespace has a machine on any engine: with several
    // hosts it is one overlay, and on one host containers and VMs share it.
    assert!(vms.networks().contains(&n), "the network stays while the namespace has machines elsewhere");
    assert_eq!(w.fake.state_of(&key("a")), Some(MachineState::Running));
    assert_eq!(w.fake.state_of(&key("c")), None);
    assert!(w.fake.networks().contains(&n), "the first engine still runs a machine of the namespace");
    assert!(w.store.machine(&system(), &key("b")).await.expect("read").is_none());
}

#[tokio::test]
async fn a_placement_without_an_engine_gets_an_error_and_no_engine_call() {
    let w = world().await;
    let microvm = Placement::new(HostName::local(), EngineKind::MicroVm);
    let elsewhere = Placement::new(HostName::parse("host-2").expect("host"), EngineKind::Container);
    record_placed(&w, "lost", &[("vm", microvm), ("far", elsewhere), ("m", Placement::default())]).await;
    let key = |name: &str| MachineKey::parse("lost", name).expect("key");
    w.fake.take_calls();

    w.pass().await;
    let strangers: Vec<Call> =
        w.fake.calls().into_iter().filter(|c| call_machine(c).is_some_and(|k| k.name.as_str() != "m")).collect();
    assert!(strangers.is_empty(), "{strangers:?}");
    assert_eq!(w.fake.state_of(&key("m")), Some(MachineState::Running), "the placed machine still runs");
    for (name, expected) in [("vm", "no microvm engine on host local"), ("far", "no container engine on host host-2")] {
        let record = w.store.machine(&system(), &key(name)).await.expect("read").expect("record");
        assert_eq!(record.observed, Observed::Error, "{name}");
        let error = record.error.unwrap_or_default();
        assert!(error.starts_with(expected), "{name}: {error}");
        assert!(error.contains("this server has: container on host local"), "{name}: {error}");
    }

    // Even a machine meant to be deleted is left alone: its record stays, with the error, and
    // no engine is asked to remove anything.
    let n = ns("lost");
    let admin = w.root.namespace_admin(&n).expect("admin");
    let free = |_: &flvpc_model::HostName, _: Option<IpAddr>, _: u16, _: Protocol| true;
    let range = PortRange { first: 40000, last: 40099 };
    w.store
        .apply_cluster(&admin, &[plan()], &[], &HostCaps::default(), range, &free, None, w.root.login())
        .await
        .expect("apply");
    w.fake.take_calls();
    w.pass().await;
    w.pass().await;
    let strangers: Vec<Call> =
        w.fake.calls().into_iter().filter(|c| call_machine(c).is_some_and(|k| k.name.as_str() != "m")).collect();
    assert!(strangers.is_empty(), "{strangers:?}");
    for name in ["vm", "far"] {
        let record = w.store.machine(&system(), &key(name)).await.expect("read").expect("the record stays");
        assert_eq!((record.desired, record.observed), (Desired::Deleted, Observed::Error), "{name}");
    }
}

/// A fake engine that also reports events: keys sent on its channel come out of
/// `machine_events` (once; then the engine says it has no events, and its follower stops).
struct WithEvents {
    fake: Arc<FakeEngine>,
    events: Mutex<Option<mpsc::UnboundedReceiver<MachineKey>>>,
}

impl WithEvents {
    fn new(fake: Arc<FakeEngine>) -> (Arc<Self>, mpsc::UnboundedSender<MachineKey>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Arc::new(Self { fake, events: Mutex::new(Some(rx)) }), tx)
    }
}

#[async_trait]
impl Engine for WithEvents {
    async fn ping(&self) -> Result<(), EngineError> {
        self.fake.ping().await
    }
    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        self.fake.image_exists(image).await
    }
    async fn ensure_network(&self, namespace: &NamespaceName) -> Result<(), EngineError> {
        self.fake.ensure_network(namespace).await
    }
    async fn remove_network(&self, namespace: &NamespaceName) -> Result<(), EngineError> {
        self.fake.remove_network(namespace).await
    }
    async fn create_machine(&self, spec: &MachineSpec) -> Result<String, EngineError> {
        self.fake.create_machine(spec).await
    }
    async fn start_machine(&self, key: &MachineKey) -> Result<(), EngineError> {
        self.fake.start_machine(key).await
    }
    async fn stop_machine(&self, key: &MachineKey, timeout: Duration) -> Result<(), EngineError> {
        self.fake.stop_machine(key, timeout).await
    }
    async fn restart_machine(&self, key: &MachineKey, timeout: Duration) -> Result<(), EngineError> {
        self.fake.restart_machine(key, timeout).await
    }
    async fn remove_machine(&self, key: &MachineKey) -> Result<(), EngineError> {
        self.fake.remove_machine(key).await
    }
    async fn list_machines(&self, namespace: Option<&NamespaceName>) -> Result<Vec<MachineInfo>, EngineError> {
        self.fake.list_machines(namespace).await
    }
    async fn inspect_machine(&self, key: &MachineKey) -> Result<Option<MachineDetails>, EngineError> {
        self.fake.inspect_machine(key).await
    }
    async fn write_authorized_keys(&self, key: &MachineKey, content: &str) -> Result<(), EngineError> {
        self.fake.write_authorized_keys(key, content).await
    }
    async fn machine_events(&self) -> Result<Option<MachineEvents>, EngineError> {
        let Some(rx) = lock(&self.events).take() else { return Ok(None) };
        Ok(Some(Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|k| (k, rx)) }))))
    }
}

#[tokio::test]
async fn the_events_of_every_engine_are_followed() {
    let w = world().await;
    let vms = Arc::new(FakeEngine::new());
    let (first, first_events) = WithEvents::new(w.fake.clone());
    let (second, second_events) = WithEvents::new(vms.clone());
    let container = Placement::default();
    let microvm = Placement::new(HostName::local(), EngineKind::MicroVm);
    let engines = Engines::new().with(container.clone(), first).with(microvm.clone(), second);
    // No periodic resync during the test: only the first pass and the events can act.
    let settings =
        Settings { instance: FAKE_INSTANCE.into(), resync_every: Duration::from_secs(3600), ..Settings::default() };
    let rec = Reconciler::with_engines(w.store.clone(), engines, settings);
    record_placed(&w, "ev", &[("a", container), ("b", microvm)]).await;
    let (a, b) = (MachineKey::parse("ev", "a").expect("key"), MachineKey::parse("ev", "b").expect("key"));
    let running = rec.start();
    settle_until(&rec, || w.fake.state_of(&a) == Some(MachineState::Running)).await;
    settle_until(&rec, || vms.state_of(&b) == Some(MachineState::Running)).await;

    // Each machine stopped behind flvpc's back, and only its own engine says so.
    for (fake, key, events) in [(&w.fake, &a, &first_events), (&vms, &b, &second_events)] {
        fake.set_state(key, MachineState::Stopped);
        events.send(key.clone()).expect("event");
        settle_until(&rec, || fake.state_of(key) == Some(MachineState::Running)).await;
        assert_eq!(fake.boots(key), 2, "{key} started again after its engine's event");
    }
    running.abort();
}

/// Waits (bounded) until `done` holds and no reconcile is in flight.
async fn settle_until(rec: &Reconciler, done: impl Fn() -> bool) {
    for _ in 0..20_000 {
        if done() && !rec.busy() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the reconciler did not get there");
}

/// A host that stops answering (issue 13, item 5): its machines are `unknown`, not stopped or
/// deleted; nothing is created elsewhere in their place; the other host's machines go on; when
/// the host is back its machines are adopted as they are (no new container, no restart).
#[tokio::test]
async fn a_host_that_does_not_answer_leaves_its_machines_unknown_until_it_is_back() {
    let w = world().await;
    let other = Arc::new(FakeEngine::new());
    let local = Placement::default();
    let second = Placement::new(HostName::parse("second").expect("host"), EngineKind::Container);
    let engines = Engines::new().with(local.clone(), w.fake.clone()).with(second.clone(), other.clone());
    let settings = Settings { instance: FAKE_INSTANCE.into(), ..Settings::default() };
    let rec = Reconciler::with_engines(w.store.clone(), engines, settings);
    record_placed(&w, "spread", &[("a", local), ("b", second)]).await;
    let key = |name: &str| MachineKey::parse("spread", name).expect("key");
    rec.enqueue_all().await;
    settle(&rec).await;
    assert_eq!(other.boots(&key("b")), 1);

    other.set_unreachable(true);
    w.fake.take_calls();
    rec.resync().await;
    settle(&rec).await;
    let b = w.store.machine(&system(), &key("b")).await.expect("read").expect("record");
    assert_eq!(b.observed, Observed::Unknown, "{b:?}");
    assert!(b.error.as_deref().is_some_and(|e| e.contains("does not answer")), "{b:?}");
    let a = w.store.machine(&system(), &key("a")).await.expect("read").expect("record");
    assert_eq!(a.observed, Observed::Running, "the answering host's machine is untouched");
    let elsewhere: Vec<Call> = w.fake.mutations().into_iter().filter(|c| call_machine(c) == Some(&key("b"))).collect();
    assert!(elsewhere.is_empty(), "nothing is made elsewhere for a machine of a silent host: {elsewhere:?}");

    other.set_unreachable(false);
    rec.resync().await;
    settle(&rec).await;
    let b = w.store.machine(&system(), &key("b")).await.expect("read").expect("record");
    assert_eq!((b.observed, b.error), (Observed::Running, None));
    assert_eq!(other.boots(&key("b")), 1, "adopted, not created or started again");
}
