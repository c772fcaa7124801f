//! A Docker engine reached over TCP with TLS client certificates (`DockerEngine::connect_to`),
//! with a real dockerd of a testbed listening with `--tlsverify` on its own address, as root.
//! Traffic goes only to the testbed's own network namespace.

#[path = "support/testbed.rs"]
mod testbed;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use flvpc_host::{DockerEngine, EngineError, EngineTls, MachineSpec, DEFAULT_IMAGE};
use flvpc_model::{EngineEndpoint, MachineKey, NamespaceName};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use testbed::Testbed;

const TLS_PORT: u16 = 2376;

/// A CA: its certificate (PEM) and what signs with it.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    params.distinguished_name.push(DnType::CommonName, name);
    let pem = params.self_signed(&key).expect("CA certificate").pem();
    Ca { pem, issuer: Issuer::new(params, key) }
}

/// A certificate signed by `ca` (PEM) and its key (PEM): for the server when `ip` is given.
fn leaf(ca: &Ca, name: &str, ip: Option<IpAddr>) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    match ip {
        Some(ip) => {
            params.subject_alt_names = vec![SanType::IpAddress(ip)];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        }
        None => params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth],
    }
    let cert = params.signed_by(&key, &ca.issuer).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write PEM");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_engine_answers_only_over_tls_with_a_client_certificate_it_trusts() {
    let mut bed = Testbed::start(1).await;
    let addr = IpAddr::V4(bed.engine(0).addr);
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine_ca, other_ca) = (ca("testbed engine CA"), ca("someone else's CA"));
    let (server_cert, server_key) = leaf(&engine_ca, "engine", Some(addr));
    let (client_cert, client_key) = leaf(&engine_ca, "flvpc", None);
    let (rogue_cert, rogue_key) = leaf(&other_ca, "flvpc", None);
    let d = dir.path();
    let ca_file = write(d, "ca.pem", &engine_ca.pem);
    let other_ca_file = write(d, "other-ca.pem", &other_ca.pem);
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    bed.set_engine_args(
        0,
        vec![
            "--tlsverify".into(),
            "--tlscacert".into(),
            path(ca_file.clone()),
            "--tlscert".into(),
            path(write(d, "server.pem", &server_cert)),
            "--tlskey".into(),
            path(write(d, "server-key.pem", &server_key)),
            "-H".into(),
            format!("tcp://{addr}:{TLS_PORT}"),
        ],
    );
    bed.stop_engine(0).await;
    bed.start_engine(0).await;

    let endpoint = EngineEndpoint::parse(&format!("tcp://{addr}:{TLS_PORT}")).expect("endpoint");
    let tls = EngineTls {
        ca: ca_file.clone(),
        cert: write(d, "client.pem", &client_cert),
        key: write(d, "client-key.pem", &client_key),
    };

    // Plain TCP is refused before anything is sent.
    let refused = DockerEngine::connect_to(&endpoint, None).await.expect_err("plain TCP beyond loopback");
    assert!(matches!(refused, EngineError::InvalidEndpoint { .. }), "{refused}");

    // With the engine's CA and a client certificate it trusts: the same engine as on its socket.
    let remote = DockerEngine::connect_to(&endpoint, Some(&tls)).await.expect("TLS connection");
    assert!(!remote.is_local_kernel());
    let info = remote.host_info().await.expect("info over TLS");
    let local = bed.connect(0).await.host_info().await.expect("info over the socket");
    assert_eq!(info, local, "one engine, two ways in");
    assert!(!info.engine_version.is_empty() && info.cpus > 0 && info.memory_bytes > 0, "{info:?}");
    assert!(remote.image_exists("flvpc/none:0").await.is_ok_and(|found| !found), "API calls work over TLS");

    // A machine on the engine over TLS: booted with the same container definition as a local
    // one. flvpc prepares no cgroup on another machine: its Docker makes the bind sources.
    bed.load_image(0, DEFAULT_IMAGE).await;
    let machines = remote.clone().for_instance("flvpc-remote-tests");
    let ns = NamespaceName::parse(&format!("rem{}", std::process::id())).expect("namespace");
    let machine = MachineKey::parse(ns.as_str(), "node0").expect("key");
    machines.ensure_network(&ns).await.expect("namespace network over TLS");
    machines.create_and_start_machine(&MachineSpec::new(machine.clone(), DEFAULT_IMAGE)).await.expect("machine");
    let booted = tokio::time::timeout(
        std::time::Duration::from_secs(90),
        machines.exec_machine(&machine, &["systemctl", "is-system-running", "--wait"]),
    )
    .await
    .expect("boot within 90 s")
    .expect("exec over TLS");
    assert!(["running", "degraded"].contains(&booted.stdout.trim()), "{booted:?}");
    let sshd = machines.exec_machine(&machine, &["systemctl", "is-active", "ssh"]).await.expect("exec");
    assert_eq!(sshd.stdout.trim(), "active", "{sshd:?}");
    machines.remove_machine(&machine).await.expect("remove over TLS");
    machines.remove_network(&ns).await.expect("remove the network over TLS");
    assert!(machines.list_machines(None).await.expect("list").is_empty());
    // What an engine on another machine keeps of the machine's cgroups is that host's (flvpc
    // removes only this kernel's): here it is this kernel, so the test removes it.
    testbed::remove_cgroups(&format!("flvpc/{}", flvpc_host::cgroup::machine_dir(&machine)));

    // A client certificate of another CA: the engine refuses the handshake.
    let rogue = EngineTls {
        ca: ca_file.clone(),
        cert: write(d, "rogue.pem", &rogue_cert),
        key: write(d, "rogue-key.pem", &rogue_key),
    };
    let err = DockerEngine::connect_to(&endpoint, Some(&rogue)).await.expect_err("untrusted client");
    assert!(matches!(err, EngineError::RemoteUnreachable { .. }), "{err}");
    assert!(err.to_string().contains(&format!("Docker engine at tcp://{addr}:{TLS_PORT} did not answer")), "{err}");

    // An engine whose certificate is not of the CA flvpc was given: flvpc refuses it.
    let wrong_ca = EngineTls { ca: other_ca_file, ..tls.clone() };
    let err = DockerEngine::connect_to(&endpoint, Some(&wrong_ca)).await.expect_err("untrusted engine");
    assert!(matches!(err, EngineError::RemoteUnreachable { .. }), "{err}");

    // A unix endpoint: the engine's socket, local kernel.
    let socket = EngineEndpoint::parse(&format!("unix://{}", bed.engine(0).socket.display())).expect("socket");
    let on_socket = DockerEngine::connect_to(&socket, None).await.expect("socket connection");
    assert!(on_socket.is_local_kernel());
    assert_eq!(on_socket.host_info().await.expect("info"), local);

    bed.cleanup().await;
}
