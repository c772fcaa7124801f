//! Tests of the cluster spec: real footloose and footloose-VPC files, every validation rule with
//! its exact error path, round trips, and hostile input.

use super::*;
use crate::NamespaceName;

fn ns(name: &str) -> NamespaceName {
    NamespaceName::parse(name).expect("test namespace is valid")
}

fn valid(yaml: &str, namespace: &str) -> Validated {
    let spec = parse_yaml(yaml).unwrap_or_else(|e| panic!("parse failed:\n{e}"));
    spec.validate(&ns(namespace)).unwrap_or_else(|e| panic!("validation failed:\n{e}"))
}

fn invalid(yaml: &str, namespace: &str) -> SpecError {
    let spec = parse_yaml(yaml).unwrap_or_else(|e| panic!("parse failed:\n{e}"));
    spec.validate(&ns(namespace)).expect_err("spec should be refused")
}

fn unreadable(yaml: &str) -> SpecError {
    parse_yaml(yaml).expect_err("spec should not parse")
}

#[track_caller]
fn assert_error(err: &SpecError, path: &str, needle: &str) {
    assert!(
        err.errors.iter().any(|e| e.path == path && e.message.contains(needle)),
        "expected an error at {path:?} containing {needle:?}, got:\n{err}"
    );
}

#[track_caller]
fn assert_warning(validated: &Validated, path: &str, needle: &str) {
    let prefix = format!("{path}: ");
    assert!(
        validated.warnings.iter().any(|w| w.starts_with(&prefix) && w.contains(needle)),
        "expected a warning at {path:?} containing {needle:?}, got: {:#?}",
        validated.warnings
    );
}

fn names(validated: &Validated) -> Vec<&str> {
    validated.machines.iter().map(|m| m.name.as_str()).collect()
}

fn host_ports(validated: &Validated) -> Vec<Option<u16>> {
    validated.machines.iter().flat_map(|m| m.ports.iter().map(|p| p.host_port)).collect()
}

/// A one-group spec with `body` as the spec's extra lines (indented 4 spaces).
fn one_group(count: u32, body: &str) -> String {
    format!("machines:\n- count: {count}\n  spec:\n{body}")
}

// ---------------------------------------------------------------------------------------------
// Real files

/// footloose README (df593d5), `footloose config create --replicas 3`. Its `backend:` sits at
/// the group level, where footloose ignores it.
const README_CONFIG_CREATE: &str = "\
cluster:
  name: cluster
  privateKey: cluster-key
machines:
- count: 3
  backend: docker
  spec:
    image: quay.io/footloose/centos7
    name: node%d
    portMappings:
    - containerPort: 22
";

/// footloose README (df593d5), the ignite example, verbatim with its comments.
const README_IGNITE: &str = "\
cluster:
  name: cluster
  privateKey: cluster-key
machines:
- count: 3
  backend: ignite
  spec:
    image: weaveworks/ignite-centos:7
    name: node%d
    portMappings:
    - containerPort: 22
  # All Ignite options shown below here are optional and can be omitted.
  # These are the defaults:
  ignite:
    cpus: 2
    memory: 1GB
    diskSize: 4GB
    kernel: weaveworks/ignite-ubuntu:4.19.47
";

/// footloose README, \"Running dockerd in Container Machines\".
const README_DIND: &str = "\
cluster:
  name: cluster
  privateKey: cluster-key
machines:
- count: 1
  spec:
    image: quay.io/footloose/centos7
    name: node%d
    portMappings:
    - containerPort: 22
    privileged: true
    volumes:
    - type: volume
      destination: /var/lib/docker
";

/// FOOTLOOSE.md's complete example: every footloose and bootloose field.
const COMPLETE_EXAMPLE: &str = "\
cluster: {name: lab, privateKey: ~/.ssh/lab-key}
machines:
- count: 2
  spec:
    name: node%d
    image: quay.io/footloose/ubuntu18.04
    privileged: true
    networks: [labnet, bridge]
    volumes:
    - {type: volume, destination: /var/lib/docker}
    - {type: bind, source: /srv, destination: /data, readOnly: true}
    portMappings:
    - {containerPort: 22, hostPort: 2222}
    - {containerPort: 53, hostPort: 5300, protocol: udp, address: 127.0.0.1}
    extraArgs: [--sysctl, net.ipv6.conf.all.disable_ipv6=0]   # BL
- count: 1
  spec:
    name: vm%d
    image: weaveworks/ignite-ubuntu
    backend: ignite
    portMappings: [{containerPort: 22}]
    ignite: {cpus: 2, memory: 1GB, diskSize: 5GB, copyFiles: {./a.sh: /root/a.sh}}
";

/// The original footloose-VPC panel's `cluster.j2` (SEED-ANALYSIS §3.1), rendered for namespace
/// team1 with NodeCount 3, NodeName web, HostPort 2222, 4 CPUs, 2 GB, 10 GB.
const PANEL_GENERATED: &str = "\
cluster:
  name: team1
  privateKey: team1-key
machines:
- count: 3
  spec:
    backend: ignite
    image: weaveworks/ignite-ubuntu
    name: web-%d
    portMappings:
    - containerPort: 22
      hostPort: 2222
    ignite:
      cpus: 4
      memory: 2GB
      diskSize: 10GB
      kernel: weaveworks/ignite-kernel:4.19.47
";

/// CONTRACT.md's example.
const CONTRACT_EXAMPLE: &str = "\
cluster: {name: team1}            # optional; if present must equal the namespace
machines:
- count: 3
  spec:
    name: node%d                  # must contain %d
    image: flvpc/debian:12
    backend: docker               # docker | microvm (\"ignite\" is accepted as microvm)
    portMappings:
    - containerPort: 22
      hostPort: 2222              # node0 → 2222, node1 → 2223 …; omitted/0 → allocated from --port-range
    ignite: {cpus: 2, memory: 1GB, diskSize: 4GB}   # resources, honoured by every backend
";

#[test]
fn footloose_config_create_output_is_accepted() {
    let v = valid(README_CONFIG_CREATE, "cluster");
    assert_eq!(names(&v), ["node0", "node1", "node2"]);
    for (i, m) in v.machines.iter().enumerate() {
        assert_eq!(
            *m,
            DesiredMachine {
                name: format!("node{i}"),
                group: 0,
                index: i,
                image: "quay.io/footloose/centos7".into(),
                backend: Backend::Docker,
                cpus: 2,
                cpu_cap_milli: None,
                memory_mb: 1024,
                disk_gb: 4,
                kernel: None,
                ports: vec![PortMapping {
                    container_port: 22,
                    host_port: None,
                    protocol: Protocol::Tcp,
                    address: None
                }],
                host: None,
            }
        );
    }
    assert_warning(&v, "cluster.privateKey", "ignored");
    assert_warning(&v, "machines[0].backend", "move it to machines[0].spec.backend");
    assert_eq!(v.warnings.len(), 2, "{:#?}", v.warnings);
}

#[test]
fn footloose_readme_ignite_example_is_accepted_with_footloose_meaning() {
    let v = valid(README_IGNITE, "cluster");
    assert_eq!(names(&v), ["node0", "node1", "node2"]);
    // footloose reads neither key at group level, so these are containers with default resources.
    assert!(v.machines.iter().all(|m| m.backend == Backend::Docker && m.cpus == 2 && m.kernel.is_none()));
    assert_eq!(v.machines[0].image, "weaveworks/ignite-centos:7");
    assert_warning(&v, "machines[0].backend", "footloose ignores it here");
    assert_warning(&v, "machines[0].ignite", "move it to machines[0].spec.ignite");
    // The misplaced keys are kept, so saving the file from the panel loses nothing.
    let spec = parse_yaml(README_IGNITE).expect("parses");
    assert_eq!(spec.machines[0].unknown.get("backend"), Some(&Value::String("ignite".into())));
    assert!(spec.machines[0].unknown.contains_key("ignite"));
}

#[test]
fn footloose_readme_dind_example_warns_about_privileged_and_volumes() {
    let v = valid(README_DIND, "cluster");
    assert_eq!(names(&v), ["node0"]);
    assert_warning(&v, "machines[0].spec.privileged", "never runs machines privileged");
    assert_warning(&v, "machines[0].spec.volumes", "ignored");
    let spec = parse_yaml(README_DIND).expect("parses");
    assert_eq!(
        spec.machines[0].spec.volumes,
        vec![VolumeSpec {
            kind: Some("volume".into()),
            destination: Some("/var/lib/docker".into()),
            ..VolumeSpec::default()
        }]
    );
}

#[test]
fn footloose_complete_example_is_accepted() {
    let v = valid(COMPLETE_EXAMPLE, "lab");
    assert_eq!(names(&v), ["node0", "node1", "vm0"]);
    let node1 = &v.machines[1];
    assert_eq!(
        node1.ports,
        vec![
            PortMapping { container_port: 22, host_port: Some(2223), protocol: Protocol::Tcp, address: None },
            PortMapping {
                container_port: 53,
                host_port: Some(5301),
                protocol: Protocol::Udp,
                address: Some(std::net::IpAddr::from([127, 0, 0, 1]))
            },
        ]
    );
    let vm = &v.machines[2];
    assert_eq!((vm.backend, vm.cpus, vm.memory_mb, vm.disk_gb), (Backend::MicroVm, 2, 1024, 5));
    assert_eq!((vm.group, vm.index), (1, 0));
    assert_eq!(
        vm.ports,
        vec![PortMapping { container_port: 22, host_port: None, protocol: Protocol::Tcp, address: None }]
    );
    for (path, needle) in [
        ("cluster.privateKey", "ignored"),
        ("machines[0].spec.privileged", "privileged"),
        ("machines[0].spec.networks", "own network"),
        ("machines[0].spec.volumes", "ignored"),
        ("machines[0].spec.extraArgs", "ignored"),
        ("machines[1].spec.ignite.copyFiles", "ignored"),
    ] {
        assert_warning(&v, path, needle);
    }
    let spec = parse_yaml(COMPLETE_EXAMPLE).expect("parses");
    assert_eq!(spec.machines[1].spec.ignite.as_ref().map(|i| i.copy_files.len()), Some(1));
    assert!(spec.machines[0].spec.volumes[1].read_only);
}

#[test]
fn footloose_vpc_panel_file_is_accepted() {
    let v = valid(PANEL_GENERATED, "team1");
    assert_eq!(names(&v), ["web-0", "web-1", "web-2"]);
    assert_eq!(host_ports(&v), [Some(2222), Some(2223), Some(2224)]);
    for m in &v.machines {
        assert_eq!(m.backend, Backend::MicroVm);
        assert_eq!((m.cpus, m.memory_mb, m.disk_gb), (4, 2048, 10));
        assert_eq!(m.kernel.as_deref(), Some("weaveworks/ignite-kernel:4.19.47"));
        assert_eq!(m.image, "weaveworks/ignite-ubuntu");
    }
    assert_eq!(
        v.warnings,
        [
            "cluster.privateKey: ignored: machines accept the SSH keys that the namespace's members uploaded",
            "machines[0].spec.ignite.kernel: recorded, not used: microVMs boot the kernel of flvpc's VM image \
             (Debian 12's cloud kernel)"
        ]
    );
}

#[test]
fn contract_example_is_accepted() {
    let v = valid(CONTRACT_EXAMPLE, "team1");
    assert_eq!(names(&v), ["node0", "node1", "node2"]);
    assert_eq!(host_ports(&v), [Some(2222), Some(2223), Some(2224)]);
    assert!(v.warnings.is_empty(), "{:#?}", v.warnings);
}

#[test]
fn minimal_spec_takes_the_defaults() {
    let v = valid("machines:\n- count: 1\n  spec: {name: box%d}\n", "team1");
    assert_eq!(
        v.machines,
        vec![DesiredMachine {
            name: "box0".into(),
            group: 0,
            index: 0,
            image: DEFAULT_IMAGE.into(),
            backend: Backend::Docker,
            cpus: DEFAULT_CPUS,
            cpu_cap_milli: None,
            memory_mb: DEFAULT_MEMORY_MB,
            disk_gb: DEFAULT_DISK_GB,
            kernel: None,
            ports: vec![],
            host: None,
        }]
    );
    assert!(v.warnings.is_empty());
    // footloose's zero values mean "unset" too.
    let v = valid(&one_group(1, "    name: box%d\n    image: ''\n    backend: ''\n    ignite: {cpus: 0}\n"), "team1");
    assert_eq!(
        (v.machines[0].image.as_str(), v.machines[0].backend, v.machines[0].cpus),
        (DEFAULT_IMAGE, Backend::Docker, 2)
    );
    assert_warning(&v, "machines[0].spec.ignite.cpus", "0 means the default");
}

// ---------------------------------------------------------------------------------------------
// Host ports: footloose's file-wide offset

#[test]
fn host_ports_count_up_across_the_whole_file() {
    // FOOTLOOSE.md: set A (2 machines, 2222) gets 2222 and 2223; set B (1 machine, 9122) gets 9124.
    let yaml = "\
machines:
- count: 2
  spec: {name: a%d, portMappings: [{containerPort: 22, hostPort: 2222}]}
- count: 1
  spec: {name: b%d, portMappings: [{containerPort: 22, hostPort: 9122}]}
";
    let v = valid(yaml, "team1");
    assert_eq!(names(&v), ["a0", "a1", "b0"]);
    assert_eq!(host_ports(&v), [Some(2222), Some(2223), Some(9124)]);
}

#[test]
fn machines_without_ports_and_empty_groups_still_count_in_the_offset() {
    let yaml = "\
machines:
- count: 2
  spec: {name: a%d}
- count: 0
  spec: {name: none%d, portMappings: [{containerPort: 80, hostPort: 7000}]}
- count: 3
  spec:
    name: b%d
    portMappings:
    - {containerPort: 22, hostPort: 9000}
    - {containerPort: 80}
    - {containerPort: 81, hostPort: 0}
";
    let v = valid(yaml, "team1");
    assert_eq!(names(&v), ["a0", "a1", "b0", "b1", "b2"]);
    // b0 is the third machine of the file (position 2): 9000 + 2.
    assert_eq!(host_ports(&v), [Some(9002), None, None, Some(9003), None, None, Some(9004), None, None]);
    assert_warning(&v, "machines[1].count", "creates no machines");
}

#[test]
fn host_port_overflow_names_machine_and_port() {
    let err =
        invalid(&one_group(3, "    name: n%d\n    portMappings: [{containerPort: 22, hostPort: 65534}]\n"), "team1");
    assert_error(&err, "machines[0].spec.portMappings[0].hostPort", "`n2` would get host port 65536 (65534 + 2");
    assert_eq!(err.errors.len(), 1, "{err}");

    // The offset comes from earlier groups too.
    let yaml = "\
machines:
- count: 5
  spec: {name: a%d}
- count: 1
  spec: {name: b%d, portMappings: [{containerPort: 22, hostPort: 65533}]}
";
    let err = invalid(yaml, "team1");
    assert_error(&err, "machines[1].spec.portMappings[0].hostPort", "`b0` would get host port 65538 (65533 + 5");
}

#[test]
fn a_host_port_is_used_once_per_protocol() {
    let yaml = "\
machines:
- count: 2
  spec: {name: a%d, portMappings: [{containerPort: 22, hostPort: 2222}]}
- count: 1
  spec:
    name: b%d
    portMappings:
    - {containerPort: 22, hostPort: 2221}
    - {containerPort: 53, hostPort: 2221, protocol: udp}
";
    // b0 is machine 2: 2221 + 2 = 2223/tcp, which a1 already has; 2223/udp is free.
    let err = invalid(yaml, "team1");
    assert_error(
        &err,
        "machines[1].spec.portMappings[0].hostPort",
        "`b0` would get host port 2223/tcp, which `a1` already gets from machines[0].spec.portMappings[0]",
    );
    assert!(!err.has_path("machines[1].spec.portMappings[1].hostPort"), "{err}");

    // Two mappings of one group overlapping after the offset.
    let err = invalid(
        &one_group(
            2,
            "    name: n%d\n    portMappings:\n    - {containerPort: 22, hostPort: 2222}\n    - {containerPort: 80, hostPort: 2223}\n",
        ),
        "team1",
    );
    assert_error(&err, "machines[0].spec.portMappings[0].hostPort", "`n1` would get host port 2223/tcp, which `n0`");
}

#[test]
fn duplicate_container_ports_in_one_machine_are_refused() {
    let err = invalid(
        &one_group(1, "    name: n%d\n    portMappings:\n    - containerPort: 22\n    - containerPort: 22\n      hostPort: 2200\n"),
        "team1",
    );
    assert_error(&err, "machines[0].spec.portMappings[1].containerPort", "22/tcp is already mapped by portMappings[0]");
    // The same number over TCP and UDP (DNS) is two different ports.
    let v = valid(
        &one_group(
            1,
            "    name: n%d\n    portMappings:\n    - {containerPort: 53}\n    - {containerPort: 53, protocol: UDP}\n",
        ),
        "team1",
    );
    assert_eq!(v.machines[0].ports[1].protocol, Protocol::Udp);
}

#[test]
fn container_port_must_be_set_and_in_range() {
    let err = invalid(&one_group(1, "    name: n%d\n    portMappings: [{hostPort: 2222}]\n"), "team1");
    assert_error(&err, "machines[0].spec.portMappings[0].containerPort", "is missing or 0");
    let err = invalid(&one_group(1, "    name: n%d\n    portMappings: [{containerPort: 0}]\n"), "team1");
    assert_error(&err, "machines[0].spec.portMappings[0].containerPort", "is missing or 0");
    let err = unreadable(&one_group(1, "    name: n%d\n    portMappings: [{containerPort: 65536}]\n"));
    assert_error(&err, "machines[0].spec.portMappings[0].containerPort", "at most 65535 (it is 65536)");
    let err = unreadable(&one_group(1, "    name: n%d\n    portMappings: [{containerPort: 22, hostPort: 70000}]\n"));
    assert_error(&err, "machines[0].spec.portMappings[0].hostPort", "at most 65535");
}

#[test]
fn protocol_and_address_are_checked() {
    let err =
        invalid(&one_group(1, "    name: n%d\n    portMappings: [{containerPort: 22, protocol: sctp}]\n"), "team1");
    assert_error(&err, "machines[0].spec.portMappings[0].protocol", "accepted values: tcp, udp");
    let err = invalid(
        &one_group(1, "    name: n%d\n    portMappings: [{containerPort: 22, address: 'localhost; rm'}]\n"),
        "team1",
    );
    assert_error(&err, "machines[0].spec.portMappings[0].address", "is not an IP address");
    let v = valid(&one_group(1, "    name: n%d\n    portMappings: [{containerPort: 22, address: 0.0.0.0}]\n"), "team1");
    assert!(v.warnings.is_empty(), "{:#?}", v.warnings);
    // Honoured, not ignored: the address reaches the machine's mapping (the server's rules decide).
    let v =
        valid(&one_group(1, "    name: n%d\n    portMappings: [{containerPort: 22, address: 127.0.0.1}]\n"), "team1");
    assert!(v.warnings.is_empty(), "{:#?}", v.warnings);
    assert_eq!(v.machines[0].ports[0].address, Some(std::net::IpAddr::from([127, 0, 0, 1])));
}

#[test]
fn too_many_port_mappings_are_refused() {
    let mappings: String = (1..=65).map(|p| format!("    - containerPort: {p}\n")).collect();
    let err = invalid(&one_group(1, &format!("    name: n%d\n    portMappings:\n{mappings}")), "team1");
    assert_error(&err, "machines[0].spec.portMappings", "has 65 entries; a machine has at most 64");
}

// ---------------------------------------------------------------------------------------------
// Names

#[test]
fn name_must_contain_percent_d_exactly_once() {
    let cases = [
        ("node", "must contain %d"),
        ("''", "is missing"),
        ("node%d-%d", "contains %d 2 times"),
        ("node%02d", "contains `%02d`; the only directive allowed is %d"),
        ("node%s", "contains `%s`"),
        ("node%%d", "contains `%%`"),
        ("'node%'", "contains `%`"),
    ];
    for (name, needle) in cases {
        let err = invalid(&one_group(1, &format!("    name: {name}\n")), "team1");
        assert_error(&err, "machines[0].spec.name", needle);
    }
    // A spec without a name at all.
    let err = invalid("machines:\n- count: 1\n  spec: {image: debian}\n", "team1");
    assert_error(&err, "machines[0].spec.name", "is missing");
}

#[test]
fn names_must_be_dns_labels() {
    let cases = [
        ("Node%d", "must be lowercase"),
        ("node_%d", "may contain only a-z, 0-9 and '-'"),
        ("nöde%d", "may contain only"),
        ("'node.%d'", "may contain only"),
        ("'-%d'", "must start and end with a letter or digit"),
        ("node%d-", "must start and end"),
        ("'\"node\\t%d\"'", "may contain only"),
    ];
    for (name, needle) in cases {
        let err = invalid(&one_group(1, &format!("    name: {name}\n")), "team1");
        assert_error(&err, "machines[0].spec.name", needle);
    }
    let err = invalid(&one_group(1, "    name: Node%d\n"), "team1");
    assert_error(&err, "machines[0].spec.name", "write `node%d`");
    // Leading digits are fine in a DNS label (RFC 1123).
    assert_eq!(names(&valid(&one_group(2, "    name: '%d-box'\n"), "team1")), ["0-box", "1-box"]);
}

#[test]
fn container_name_must_fit_63_characters() {
    let prefix = "a".repeat(56);
    // team1- (6) + 56 + one digit = 63: fine for count 10 (last index 9).
    let v = valid(&one_group(10, &format!("    name: {prefix}%d\n")), "team1");
    assert_eq!(v.machines.len(), 10);
    // Index 10 makes it 64.
    let err = invalid(&one_group(11, &format!("    name: {prefix}%d\n")), "team1");
    assert_error(&err, "machines[0].spec.name", "for machine 10, so its container name");
    assert_error(&err, "machines[0].spec.name", "is 64 characters; at most 63");
}

#[test]
fn expanded_names_must_be_unique_across_groups() {
    let yaml = "\
machines:
- count: 11
  spec: {name: node%d}
- count: 1
  spec: {name: node1%d}
";
    let err = invalid(yaml, "team1");
    assert_error(
        &err,
        "machines[1].spec.name",
        "gives `node10` (index 0), which machines[0].spec.name also gives (index 10)",
    );
    // Two identical groups: one error, counting the rest.
    let yaml = "\
machines:
- count: 3
  spec: {name: node%d}
- count: 3
  spec: {name: node%d}
";
    let err = invalid(yaml, "team1");
    assert_eq!(err.errors.len(), 1, "{err}");
    assert_error(&err, "machines[1].spec.name", "(and 2 more names of this group)");
}

// ---------------------------------------------------------------------------------------------
// Cluster, image, backend, resources

#[test]
fn cluster_name_must_match_the_namespace() {
    let err = invalid("cluster: {name: other}\nmachines: []\n", "team1");
    assert_error(&err, "cluster.name", "is `other` but the namespace is `team1`");
    // Absent, empty or equal: fine.
    for yaml in ["cluster: {privateKey: k}\n", "cluster: {name: ''}\n", "cluster: {name: team1}\n", "cluster:\n"] {
        let v = valid(&format!("{yaml}machines: []\n"), "team1");
        assert!(v.machines.is_empty());
    }
}

#[test]
fn image_must_be_a_strict_reference() {
    for image in ["Debian", "'-rm'", "'debian 12'", "'debian:'", "a//b", "'ubuntu@sha256:abc'"] {
        let err = invalid(&one_group(1, &format!("    name: n%d\n    image: {image}\n")), "team1");
        assert_error(&err, "machines[0].spec.image", "is not a valid image reference");
    }
    let long = format!("a/{}", "b".repeat(300));
    let err = invalid(&one_group(1, &format!("    name: n%d\n    image: {long}\n")), "team1");
    assert_error(&err, "machines[0].spec.image", "longer than 255");
}

#[test]
fn backend_values() {
    for (backend, expected) in [
        ("docker", Backend::Docker),
        ("ignite", Backend::MicroVm),
        ("microvm", Backend::MicroVm),
        ("MicroVM", Backend::MicroVm),
    ] {
        let v = valid(&one_group(1, &format!("    name: n%d\n    backend: {backend}\n")), "team1");
        assert_eq!(v.machines[0].backend, expected, "{backend}");
    }
    let err = invalid(&one_group(1, "    name: n%d\n    backend: firecracker\n"), "team1");
    assert_error(&err, "machines[0].spec.backend", "is `firecracker`; accepted values: docker, microvm, ignite");
    assert_eq!(Backend::MicroVm.to_string(), "microvm");
    assert_eq!(Protocol::Udp.as_str(), "udp");
}

#[test]
fn resources_are_parsed_and_bounded() {
    let resources =
        |ignite: &str| one_group(1, &format!("    name: n%d\n    backend: microvm\n    ignite: {ignite}\n"));
    let v = valid(&resources("{cpus: 256, memory: 1TiB, diskSize: 16384GB, kernel: 'k/kernel:5.10'}"), "team1");
    let m = &v.machines[0];
    assert_eq!((m.cpus, m.memory_mb, m.disk_gb, m.kernel.as_deref()), (256, 1 << 20, 16384, Some("k/kernel:5.10")));
    let v = valid(&resources("{memory: 512mb, diskSize: 2048M}"), "team1");
    assert_eq!((v.machines[0].memory_mb, v.machines[0].disk_gb), (512, 2));
    // A bare number counts bytes, as in ignite and Docker.
    let v = valid(&resources("{memory: 1073741824}"), "team1");
    assert_eq!(v.machines[0].memory_mb, 1024);

    let cases = [
        ("{cpus: 257}", "machines[0].spec.ignite.cpus", "must be at most 256 (it is 257)"),
        ("{memory: 32MB}", "machines[0].spec.ignite.memory", "`32MB` must be at least 64MB"),
        ("{memory: 2TB}", "machines[0].spec.ignite.memory", "must be at most 1024GB"),
        ("{memory: 1.5GB}", "machines[0].spec.ignite.memory", "must be a whole number"),
        ("{memory: -1GB}", "machines[0].spec.ignite.memory", "must not be negative"),
        ("{memory: lots}", "machines[0].spec.ignite.memory", "is not a size"),
        ("{memory: 2048}", "machines[0].spec.ignite.memory", "write 2048MB if megabytes are meant"),
        ("{memory: 0}", "machines[0].spec.ignite.memory", "`0` has no unit, so it counts bytes"),
        ("{diskSize: 500MB}", "machines[0].spec.ignite.diskSize", "whole number of gigabytes"),
        ("{diskSize: 0GB}", "machines[0].spec.ignite.diskSize", "at least 1GB"),
        ("{diskSize: 20000GB}", "machines[0].spec.ignite.diskSize", "at most 16384GB"),
        ("{diskSize: 99999999999999999999GB}", "machines[0].spec.ignite.diskSize", "too large"),
        ("{kernel: 'Bad Kernel'}", "machines[0].spec.ignite.kernel", "not a valid kernel image reference"),
    ];
    for (ignite, path, needle) in cases {
        assert_error(&invalid(&resources(ignite), "team1"), path, needle);
    }
}

#[test]
fn kernel_is_ignored_by_docker() {
    let v = valid(&one_group(1, "    name: n%d\n    ignite: {kernel: weaveworks/ignite-kernel:4.19.47}\n"), "team1");
    assert_eq!(v.machines[0].kernel, None);
    assert_warning(&v, "machines[0].spec.ignite.kernel", "ignored by the docker backend");
}

#[test]
fn group_and_total_counts_are_bounded() {
    let err = invalid(&one_group(257, "    name: n%d\n"), "team1");
    assert_error(&err, "machines[0].count", "is 257; a group has at most 256 machines");
    let group = "- count: 250\n  spec: {name: g%dx}\n";
    let yaml = format!("machines:\n{}", (0..5).map(|g| group.replace("g%d", &format!("g{g}-%d"))).collect::<String>());
    let err = invalid(&yaml, "team1");
    assert_error(&err, "machines", "ask for 1250 machines in total; a namespace has at most 1000");
    // Exactly 1000, each with a host port: accepted, numbered 10000..=10999.
    let group = "- count: 250\n  spec: {name: gX-%d, portMappings: [{containerPort: 22, hostPort: 10000}]}\n";
    let yaml = format!("machines:\n{}", (0..4).map(|g| group.replace('X', &g.to_string())).collect::<String>());
    let v = valid(&yaml, "team1");
    assert_eq!(v.machines.len(), 1000);
    assert_eq!(v.machines[999].ports[0].host_port, Some(10999));
    assert_eq!(v.machines[999].name, "g3-249");
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = "\
cluster: {name: other}
machines:
- count: 2
  spec:
    name: Node
    image: 'bad image'
    backend: vmware
    portMappings: [{containerPort: 0, protocol: icmp}]
    ignite: {memory: 1MB, diskSize: 1MB}
";
    let err = invalid(yaml, "team1");
    for path in [
        "cluster.name",
        "machines[0].spec.name",
        "machines[0].spec.image",
        "machines[0].spec.backend",
        "machines[0].spec.portMappings[0].containerPort",
        "machines[0].spec.portMappings[0].protocol",
        "machines[0].spec.ignite.memory",
        "machines[0].spec.ignite.diskSize",
    ] {
        assert!(err.has_path(path), "missing {path} in:\n{err}");
    }
    assert_eq!(err.errors.len(), 8, "{err}");
    // Display: one "path: message" per line.
    let text = err.to_string();
    assert_eq!(text.lines().count(), 8);
    assert!(text.lines().next().is_some_and(|l| l.starts_with("cluster.name: is `other`")), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Accepted footloose fields and unknown keys

#[test]
fn unhonoured_footloose_fields_are_accepted_with_warnings() {
    let v = valid(
        &one_group(
            1,
            "    name: n%d\n    cmd: /bin/bash\n    publicKey: mykey\n    networks: [a]\n    extraArgs: [--cap-add=ALL]\n",
        ),
        "team1",
    );
    assert_warning(&v, "machines[0].spec.cmd", "image's init");
    assert_warning(&v, "machines[0].spec.publicKey", "ignored");
    assert_warning(&v, "machines[0].spec.networks", "ignored");
    assert_warning(&v, "machines[0].spec.extraArgs", "no extra arguments");
    // footloose's default cmd is what happens anyway.
    let v = valid(&one_group(1, "    name: n%d\n    cmd: /sbin/init\n    privileged: false\n"), "team1");
    assert!(v.warnings.is_empty(), "{:#?}", v.warnings);
}

#[test]
fn unknown_keys_are_kept_and_named_in_warnings() {
    let yaml = "\
version: 2
cluster: {name: team1, region: eu}
machines:
- count: 1
  replicas: 4
  spec:
    name: n%d
    hostname: custom
    'odd key': 1
    portMappings: [{containerPort: 22, label: ssh}]
    ignite: {cpus: 2, gpu: true}
";
    let v = valid(yaml, "team1");
    for path in [
        "version",
        "cluster.region",
        "machines[0].replicas",
        "machines[0].spec.hostname",
        "machines[0].spec[\"odd key\"]",
        "machines[0].spec.portMappings[0].label",
        "machines[0].spec.ignite.gpu",
    ] {
        assert_warning(&v, path, "unknown key; ignored");
    }
    let spec = parse_yaml(yaml).expect("parses");
    assert_eq!(spec.unknown.get("version"), Some(&Value::from(2)));
    assert!(spec.to_yaml().contains("hostname: custom"), "{}", spec.to_yaml());
}

#[test]
fn keys_match_ignoring_case_like_footloose() {
    let v = valid(
        "Machines:\n- Count: 2\n  Spec:\n    NAME: n%d\n    PortMappings: [{ContainerPort: 22, HOSTPORT: 3000}]\n",
        "team1",
    );
    assert_eq!(host_ports(&v), [Some(3000), Some(3001)]);
    assert!(v.warnings.is_empty(), "{:#?}", v.warnings);
    let err = unreadable("machines:\n- count: 1\n  spec: {name: a%d, Name: b%d}\n");
    assert_error(&err, "machines[0].spec.name", "is given more than once");
}

#[test]
fn nulls_and_empty_documents() {
    let v = valid(&one_group(1, "    name: n%d\n    image:\n    portMappings:\n    ignite:\n"), "team1");
    assert_eq!(v.machines[0].image, DEFAULT_IMAGE);
    for empty in ["", "# nothing\n", "---\n", "machines:\n", "machines: []\n"] {
        let spec = parse_yaml(empty).expect("an empty spec is valid");
        let v = spec.validate(&ns("team1")).expect("and means no machines");
        assert!(v.machines.is_empty());
    }
    let v = valid("machines: []\n", "team1");
    assert_warning(&v, "machines", "runs no machines");
}

#[test]
fn wrong_shapes_are_refused_with_paths() {
    assert_error(&unreadable("- a\n- b\n"), "", "must be a mapping with a `machines:` list, not a list");
    assert_error(&unreadable("just text\n"), "", "not a string");
    assert_error(&unreadable("machines: {count: 1}\n"), "machines", "must be a list, not a mapping");
    assert_error(&unreadable("machines: [3]\n"), "machines[0]", "must be a mapping");
    assert_error(&unreadable("machines:\n- count: 1\n"), "machines[0].spec", "is missing");
    assert_error(&unreadable("machines:\n- count: 1\n  spec: [name]\n"), "machines[0].spec", "must be a mapping");
    assert_error(
        &unreadable(&one_group(1, "    name: 7\n")),
        "machines[0].spec.name",
        "must be a string, not a number",
    );
    assert_error(
        &unreadable(&one_group(1, "    name: n%d\n    privileged: maybe\n")),
        "machines[0].spec.privileged",
        "true or false",
    );
    assert_error(
        &unreadable(&one_group(1, "    name: n%d\n    networks: [1]\n")),
        "machines[0].spec.networks[0]",
        "must be a string",
    );
    assert_error(
        &unreadable(&one_group(1, "    name: n%d\n    ignite: {memory: [1]}\n")),
        "machines[0].spec.ignite.memory",
        "size",
    );
    assert_error(
        &unreadable(&one_group(1, "    name: n%d\n    ignite: {copyFiles: {a: 1}}\n")),
        "machines[0].spec.ignite.copyFiles.a",
        "must be a string",
    );
}

#[test]
fn numbers_must_be_whole_unquoted_and_non_negative() {
    let cases = [
        ("count: '3'", "machines[0].count", "not a string (write it without quotes)"),
        ("count: -1", "machines[0].count", "must not be negative (it is -1)"),
        ("count: 2.5", "machines[0].count", "whole number without a decimal point"),
        ("count: 1e3", "machines[0].count", "whole number without a decimal point"),
        ("count: 99999999999999999999999", "machines[0].count", "must be at most"),
        ("count: true", "machines[0].count", "not true/false"),
    ];
    for (line, path, needle) in cases {
        let err = unreadable(&format!("machines:\n- {line}\n  spec: {{name: n%d}}\n"));
        assert_error(&err, path, needle);
    }
    let err = unreadable(&one_group(1, "    name: n%d\n    portMappings: [{containerPort: '22', hostPort: -2}]\n"));
    assert_error(&err, "machines[0].spec.portMappings[0].containerPort", "not a string");
    assert_error(&err, "machines[0].spec.portMappings[0].hostPort", "must not be negative");
    let err = unreadable(&one_group(1, "    name: n%d\n    ignite: {cpus: '2'}\n"));
    assert_error(&err, "machines[0].spec.ignite.cpus", "not a string");
    let err = unreadable(&one_group(1, "    name: n%d\n    ignite: {cpus: 1.5}\n"));
    assert_error(&err, "machines[0].spec.ignite.cpus", "whole number");
    // A count far over the limit parses, and validation refuses it without expanding anything.
    let err = invalid("machines:\n- count: 18446744073709551615\n  spec: {name: n%d}\n", "team1");
    assert_error(&err, "machines[0].count", "a group has at most 256 machines");
}

// ---------------------------------------------------------------------------------------------
// Round trips and JSON

#[test]
fn yaml_round_trips() {
    let tricky = "\
version: {nested: [1, 2.5, 'yes', null]}
cluster: {name: team1}
machines:
- count: 1
  spec:
    name: n%d
    image: 'registry.local:5000/a/b:1.0'
    cmd: 'yes'
    publicKey: '0755'
    networks: ['~', '- x', '#c', 'a: b', '']
    ignite: {memory: '1073741824', diskSize: 4GB, copyFiles: {'./a b': '/root/x y'}}
    portMappings: [{containerPort: 22, hostPort: 0, protocol: tcp, address: '::'}]
";
    for yaml in
        [README_CONFIG_CREATE, README_IGNITE, README_DIND, COMPLETE_EXAMPLE, PANEL_GENERATED, CONTRACT_EXAMPLE, tricky]
    {
        let spec = parse_yaml(yaml).expect("parses");
        let rendered = spec.to_yaml();
        let again = parse_yaml(&rendered).unwrap_or_else(|e| panic!("re-parse failed: {e}\n{rendered}"));
        assert_eq!(again, spec, "round trip changed the spec:\n{rendered}");
        assert_eq!(again.to_yaml(), rendered, "rendering is not stable");
    }
}

#[test]
fn to_yaml_uses_footloose_key_names() {
    let yaml = parse_yaml(PANEL_GENERATED).expect("parses").to_yaml();
    for key in
        ["privateKey:", "portMappings:", "containerPort: 22", "hostPort: 2222", "diskSize: 10GB", "backend: ignite"]
    {
        assert!(yaml.contains(key), "{key} missing in:\n{yaml}");
    }
}

#[test]
fn json_is_equivalent_to_yaml() {
    let json = r#"{
        "cluster": {"name": "team1", "privateKey": "team1-key"},
        "machines": [{
            "count": 3,
            "spec": {
                "backend": "ignite",
                "image": "weaveworks/ignite-ubuntu",
                "name": "web-%d",
                "portMappings": [{"containerPort": 22, "hostPort": 2222}],
                "ignite": {"cpus": 4, "memory": "2GB", "diskSize": "10GB", "kernel": "weaveworks/ignite-kernel:4.19.47"}
            }
        }]
    }"#;
    let from_json = parse_json(json).expect("json parses");
    assert_eq!(from_json, parse_yaml(PANEL_GENERATED).expect("yaml parses"));
    // The serde entry point goes through the same reader.
    let via_serde: ClusterSpec = serde_json::from_str(json).expect("deserializes");
    assert_eq!(via_serde, from_json);
    let refused = serde_json::from_str::<ClusterSpec>(r#"{"machines": [{"count": "3", "spec": {"name": "n%d"}}]}"#)
        .expect_err("string count");
    assert!(refused.to_string().contains("machines[0].count: must be a whole number, not a string"), "{refused}");
    // And the serializer writes what the reader reads.
    let json_text = serde_json::to_string(&from_json).expect("serializes");
    assert_eq!(parse_json(&json_text).expect("reparses"), from_json);
    // The same errors with the same paths.
    let err = parse_json(r#"{"machines": [{"count": -1, "spec": {"name": "n%d"}}]}"#).expect_err("negative");
    assert_error(&err, "machines[0].count", "must not be negative");
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let err = unreadable("machines:\n- count: 1\n  spec: {name: n%d\n");
    assert_eq!(err.errors.len(), 1);
    assert!(err.errors[0].message.starts_with("YAML syntax error"), "{err}");
    assert!(err.errors[0].position.is_some_and(|p| p.line >= 3), "{err:?}");

    let err = parse_json("{\"machines\": [\n  {\"count\": 1,}\n]}").expect_err("trailing comma");
    assert!(err.errors[0].message.starts_with("JSON syntax error"), "{err}");
    assert_eq!(err.errors[0].position, Some(TextPosition { line: 2, column: 15 }));
}

// ---------------------------------------------------------------------------------------------
// Hostile input

#[test]
fn oversized_input_is_refused_before_parsing() {
    let big = format!("machines: []\n#{}\n", "x".repeat(MAX_SPEC_BYTES));
    let err = parse_yaml(&big).expect_err("too big");
    assert_error(&err, "", "at most 256 KiB are accepted");
    let err =
        parse_json(&format!("{{\"machines\": [], \"pad\": \"{}\"}}", "x".repeat(MAX_SPEC_BYTES))).expect_err("big");
    assert_error(&err, "", "at most 256 KiB");
}

#[test]
fn alias_bombs_are_refused() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (prev, next) in ('a'..='i').zip('b'..='j') {
        let refs = vec![format!("*{prev}"); 10].join(", ");
        bomb.push_str(&format!("{next}: &{next} [{refs}]\n"));
    }
    bomb.push_str("machines: []\n");
    let err = parse_yaml(&bomb).expect_err("billion laughs");
    assert_error(&err, "", "expands too much through aliases");
    // Aliases used the normal way still work.
    let yaml = "\
common: &common {image: flvpc/debian:12, ignite: {cpus: 4}}
machines:
- count: 1
  spec: {<<: *common, name: a%d}
- count: 1
  spec: {<<: *common, name: b%d}
";
    let v = valid(yaml, "team1");
    assert!(v.machines.iter().all(|m| m.cpus == 4));
    assert_warning(&v, "common", "unknown key");
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let flow = format!("machines: {}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_error(&parse_yaml(&flow).expect_err("flow nesting"), "", "YAML");
    let block: String = (0..200).map(|depth| format!("{}k:\n", " ".repeat(depth))).collect();
    assert_error(&parse_yaml(&block).expect_err("block nesting"), "", "too deeply nested");
    let json = format!("{{\"machines\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert_error(&parse_json(&json).expect_err("json nesting"), "", "JSON syntax error");
}

#[test]
fn tabs_nul_and_multiple_documents_are_refused() {
    let err = unreadable("machines:\n-\tcount: 1\n\tspec: {name: n%d}\n");
    assert!(err.errors[0].position.is_some(), "{err:?}");
    let err = unreadable("machines: []\nx: \"a\0b\"\n");
    assert!(err.errors[0].message.starts_with("YAML syntax error"), "{err}");
    let err = unreadable("machines: []\n---\nmachines: []\n");
    assert_error(&err, "", "YAML");
    // An escaped NUL reaches validation, and the message shows it escaped.
    let err = invalid(&one_group(1, "    name: \"n\\0%d\"\n"), "team1");
    assert_error(&err, "machines[0].spec.name", "`\\0` is not allowed");
    assert!(!err.to_string().contains('\0'));
}

#[test]
fn long_strings_give_short_messages() {
    let long = "x".repeat(100_000);
    let err = invalid(&one_group(1, &format!("    name: {long}\n")), "team1");
    assert_error(&err, "machines[0].spec.name", "must contain %d");
    assert!(err.to_string().len() < 400, "{}", err.to_string().len());
    // YAML itself limits plain keys to 1024 characters.
    let err = invalid(
        &format!("{}: 1\nmachines:\n- count: 1\n  spec: {{name: n%d, image: '{long}'}}\n", "k".repeat(1000)),
        "team1",
    );
    assert!(err.to_string().len() < 400, "{err}");
}

#[test]
fn overlong_names_are_not_expanded() {
    // Two identical 60 000-character patterns: each is refused once, and no name is built (so no
    // clash is reported and no memory is spent on 500 huge names).
    let group = format!("- count: 250\n  spec: {{name: {}%d}}\n", "x".repeat(60_000));
    let err = invalid(&format!("machines:\n{group}{group}"), "team1");
    assert_eq!(err.errors.len(), 2, "{err}");
    assert_error(&err, "machines[0].spec.name", "at most 63 are allowed");
    assert_error(&err, "machines[1].spec.name", "at most 63 are allowed");
}

#[test]
fn error_and_warning_lists_are_capped() {
    let groups: String = (0..500).map(|_| "- count: 1\n  spec: {name: bad}\n").collect();
    let err = invalid(&format!("machines:\n{groups}"), "team1");
    assert_eq!((err.errors.len(), err.omitted), (100, 400));
    assert!(err.to_string().ends_with("… and 400 more problems"));

    let keys: String = (0..300).map(|i| format!("k{i}: 1\n")).collect();
    let v = valid(&format!("{keys}machines:\n- count: 1\n  spec: {{name: n%d}}\n"), "team1");
    assert_eq!(v.warnings.len(), 101);
    assert_eq!(v.warnings.last().map(String::as_str), Some("… and 200 more warnings"));
}

#[test]
fn field_error_display() {
    let error = FieldError { path: "machines[0].spec.name".into(), message: "must contain %d".into(), position: None };
    assert_eq!(error.to_string(), "machines[0].spec.name: must contain %d");
    assert_eq!(SpecError::single("", "whole document").to_string(), "whole document");
}

#[test]
fn cpu_cap_is_flvpcs_own_hard_limit() {
    let ns = crate::NamespaceName::parse("team1").expect("ns");
    let spec = parse_yaml("machines:\n- count: 1\n  spec:\n    name: n%d\n    ignite: {cpus: 2, cpuCap: 1.5}\n")
        .expect("parse");
    let validated = spec.validate(&ns).expect("valid");
    assert_eq!(validated.machines[0].cpu_cap_milli, Some(1500));
    assert!(spec.to_yaml().contains("cpuCap: 1.5"), "{}", spec.to_yaml());
    let none =
        parse_yaml("machines:\n- count: 1\n  spec:\n    name: n%d\n").expect("parse").validate(&ns).expect("valid");
    assert_eq!(none.machines[0].cpu_cap_milli, None);
    for bad in ["0", "-1", "1000", "0.0001"] {
        let text = format!("machines:\n- count: 1\n  spec:\n    name: n%d\n    ignite: {{cpuCap: {bad}}}\n");
        let refused = match parse_yaml(&text) {
            Err(e) => e,
            Ok(spec) => spec.validate(&ns).expect_err(bad),
        };
        assert!(refused.has_path("machines[0].spec.ignite.cpuCap"), "{bad}: {refused}");
    }
    let quoted =
        parse_yaml("machines:\n- count: 1\n  spec:\n    name: n%d\n    ignite: {cpuCap: \"1\"}\n").expect_err("string");
    assert!(quoted.to_string().contains("without quotes"), "{quoted}");
}

/// `spec.host` pins a group to a host: a host name by the namespace rule, carried to every
/// machine of the group; anything else is refused at its path.
#[test]
fn a_group_may_be_pinned_to_a_host() {
    let v = valid("machines:\n- count: 2\n  spec: {name: p%d, host: far}\n- count: 1\n  spec: {name: q%d}\n", "team1");
    let hosts: Vec<Option<&str>> = v.machines.iter().map(|m| m.host.as_ref().map(|h| h.as_str())).collect();
    assert_eq!(hosts, [Some("far"), Some("far"), None]);
    let spec =
        crate::spec::parse_yaml("machines:\n- count: 1\n  spec: {name: p%d, host: \"Far Away\"}\n").expect("reads");
    let err = spec.validate(&crate::NamespaceName::parse("team1").expect("ns")).expect_err("refused");
    assert!(err.to_string().contains("machines[0].spec.host"), "{err}");
}
