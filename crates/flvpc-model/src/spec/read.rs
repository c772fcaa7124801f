//! Reading a parsed document (a JSON value tree, whichever syntax it came from) into a
//! [`ClusterSpec`], the way footloose reads footloose.yaml through Go's `encoding/json`:
//! keys match ignoring ASCII case, `null` leaves a field unset, a string where a number is wanted
//! is an error. Unlike footloose, unknown keys are kept (and later warned about), and every type
//! error in the document is reported, not just the first.

use super::error::{at, join, Problems};
use super::{ClusterMeta, ClusterSpec, IgniteSpec, MachineGroup, MachineSpec, PortMappingSpec, SpecError, VolumeSpec};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Reads the whole document; `null` (an empty file) is an empty spec, as in footloose.
pub(crate) fn spec_from_value(root: &Value) -> Result<ClusterSpec, SpecError> {
    let mut p = Problems::default();
    let spec = read_spec(&mut p, root);
    p.finish(spec)
}

/// The keys of one mapping, consumed field by field; what is left over is unknown.
struct Fields<'v> {
    path: String,
    map: &'v Map<String, Value>,
    used: BTreeSet<&'v str>,
}

impl<'v> Fields<'v> {
    /// `value` as a mapping, or an error at `path`.
    fn of(p: &mut Problems, path: &str, value: &'v Value) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self { path: path.to_owned(), map, used: BTreeSet::new() }),
            other => {
                p.error(path, format!("must be a mapping of keys to values, not {}", kind(other)));
                None
            }
        }
    }

    /// The value of field `name` with its path; `None` when absent or `null`.
    fn take(&mut self, p: &mut Problems, name: &'static str) -> Option<(String, &'v Value)> {
        let path = join(&self.path, name);
        let mut found: Option<(&'v String, &'v Value)> = None;
        let mut spellings: Vec<&'v str> = Vec::new();
        for (key, value) in self.map {
            if key.eq_ignore_ascii_case(name) {
                self.used.insert(key.as_str());
                spellings.push(key.as_str());
                // encoding/json prefers the exact spelling over a case-insensitive match.
                if found.is_none() || key == name {
                    found = Some((key, value));
                }
            }
        }
        if spellings.len() > 1 {
            // footloose would silently keep one of them; which one depends on key order.
            let list: Vec<String> = spellings.iter().map(|s| super::error::shown(s)).collect();
            p.error(&path, format!("is given more than once ({}); keys match ignoring case", list.join(", ")));
        }
        match found {
            Some((_, Value::Null)) | None => None,
            Some((_, value)) => Some((path, value)),
        }
    }

    /// The keys not consumed by `take`, as written.
    fn rest(&self) -> BTreeMap<String, Value> {
        self.map
            .iter()
            .filter(|(key, _)| !self.used.contains(key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}

/// How a value's type is named in messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty (null)",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn string(p: &mut Problems, path: &str, value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        other => {
            p.error(path, format!("must be a string, not {} (put it in quotes)", kind(other)));
            None
        }
    }
}

/// A whole number in `0..=max`. Strings are refused like footloose does ("22" is not 22): a
/// quoted number is usually a template mistake worth pointing out.
fn unsigned(p: &mut Problems, path: &str, value: &Value, max: u64) -> Option<u64> {
    let Value::Number(number) = value else {
        let hint = if value.is_string() { " (write it without quotes)" } else { "" };
        p.error(path, format!("must be a whole number, not {}{hint}", kind(value)));
        return None;
    };
    if let Some(n) = number.as_u64() {
        if n <= max {
            return Some(n);
        }
        p.error(path, format!("must be at most {max} (it is {n})"));
    } else if number.is_i64() {
        p.error(path, format!("must not be negative (it is {number})"));
    } else {
        // A float: either a fraction or an integer too large for 64 bits.
        let f = number.as_f64().unwrap_or(f64::NAN);
        if f.is_finite() && f.fract() == 0.0 && f.abs() >= 1e19 {
            p.error(path, format!("must be at most {max} (it is {number})"));
        } else {
            p.error(path, format!("must be a whole number without a decimal point (it is {number})"));
        }
    }
    None
}

/// A positive number, fractions allowed (flvpc's `cpuCap`).
fn positive_number(p: &mut Problems, path: &str, value: &Value) -> Option<f64> {
    match value.as_f64() {
        Some(n) if n.is_finite() && n > 0.0 => Some(n),
        Some(n) => {
            p.error(path, format!("must be a number above 0 (it is {n})"));
            None
        }
        None => {
            let hint = if value.is_string() { " (write it without quotes)" } else { "" };
            p.error(path, format!("must be a number such as 1.5, not {}{hint}", kind(value)));
            None
        }
    }
}

fn boolean(p: &mut Problems, path: &str, value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        other => {
            p.error(path, format!("must be true or false, not {}", kind(other)));
            false
        }
    }
}

fn list<'v>(p: &mut Problems, path: &str, value: &'v Value) -> &'v [Value] {
    match value {
        Value::Array(items) => items,
        other => {
            p.error(path, format!("must be a list, not {}", kind(other)));
            &[]
        }
    }
}

fn string_list(p: &mut Problems, path: &str, value: &Value) -> Vec<String> {
    list(p, path, value).iter().enumerate().filter_map(|(i, item)| string(p, &at(path, i), item)).collect()
}

/// A size: a string such as `1GB`, or a bare number (bytes, kept as its decimal text). The
/// meaning is checked by validation, which can then name the field with a precise message.
fn size(p: &mut Problems, path: &str, value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        other => {
            p.error(path, format!("must be a size such as 1GB, not {}", kind(other)));
            None
        }
    }
}

fn read_spec(p: &mut Problems, root: &Value) -> ClusterSpec {
    if root.is_null() {
        return ClusterSpec::default();
    }
    let Value::Object(map) = root else {
        p.error("", format!("the spec must be a mapping with a `machines:` list, not {}", kind(root)));
        return ClusterSpec::default();
    };
    let mut f = Fields { path: String::new(), map, used: BTreeSet::new() };
    let cluster = f.take(p, "cluster").and_then(|(path, v)| read_cluster(p, &path, v));
    let machines = match f.take(p, "machines") {
        Some((path, v)) => {
            list(p, &path, v).iter().enumerate().filter_map(|(i, item)| read_group(p, &at(&path, i), item)).collect()
        }
        None => Vec::new(),
    };
    ClusterSpec { cluster, machines, unknown: f.rest() }
}

fn read_cluster(p: &mut Problems, path: &str, value: &Value) -> Option<ClusterMeta> {
    let mut f = Fields::of(p, path, value)?;
    let name = f.take(p, "name").and_then(|(path, v)| string(p, &path, v));
    let private_key = f.take(p, "privateKey").and_then(|(path, v)| string(p, &path, v));
    Some(ClusterMeta { name, private_key, unknown: f.rest() })
}

fn read_group(p: &mut Problems, path: &str, value: &Value) -> Option<MachineGroup> {
    let mut f = Fields::of(p, path, value)?;
    let count = f.take(p, "count").and_then(|(path, v)| unsigned(p, &path, v, u64::MAX)).unwrap_or(0);
    let spec = match f.take(p, "spec") {
        Some((path, v)) => read_machine(p, &path, v)?,
        None => {
            p.error(&join(path, "spec"), "is missing; every group needs a spec with at least a name such as node%d");
            return None;
        }
    };
    Some(MachineGroup { count, spec, unknown: f.rest() })
}

fn read_machine(p: &mut Problems, path: &str, value: &Value) -> Option<MachineSpec> {
    let mut f = Fields::of(p, path, value)?;
    let name = f.take(p, "name").and_then(|(path, v)| string(p, &path, v)).unwrap_or_default();
    let image = f.take(p, "image").and_then(|(path, v)| string(p, &path, v));
    let backend = f.take(p, "backend").and_then(|(path, v)| string(p, &path, v));
    let port_mappings = match f.take(p, "portMappings") {
        Some((path, v)) => list(p, &path, v)
            .iter()
            .enumerate()
            .filter_map(|(i, item)| read_port_mapping(p, &at(&path, i), item))
            .collect(),
        None => Vec::new(),
    };
    let ignite = f.take(p, "ignite").and_then(|(path, v)| read_ignite(p, &path, v));
    let privileged = f.take(p, "privileged").is_some_and(|(path, v)| boolean(p, &path, v));
    let volumes = match f.take(p, "volumes") {
        Some((path, v)) => {
            list(p, &path, v).iter().enumerate().filter_map(|(i, item)| read_volume(p, &at(&path, i), item)).collect()
        }
        None => Vec::new(),
    };
    let networks = f.take(p, "networks").map(|(path, v)| string_list(p, &path, v)).unwrap_or_default();
    let cmd = f.take(p, "cmd").and_then(|(path, v)| string(p, &path, v));
    let public_key = f.take(p, "publicKey").and_then(|(path, v)| string(p, &path, v));
    let extra_args = f.take(p, "extraArgs").map(|(path, v)| string_list(p, &path, v)).unwrap_or_default();
    let host = f.take(p, "host").and_then(|(path, v)| string(p, &path, v));
    Some(MachineSpec {
        name,
        image,
        backend,
        port_mappings,
        ignite,
        privileged,
        volumes,
        networks,
        cmd,
        public_key,
        extra_args,
        host,
        unknown: f.rest(),
    })
}

fn read_port_mapping(p: &mut Problems, path: &str, value: &Value) -> Option<PortMappingSpec> {
    let mut f = Fields::of(p, path, value)?;
    let port = |p: &mut Problems, (path, v): (String, &Value)| {
        unsigned(p, &path, v, u64::from(u16::MAX)).and_then(|n| u16::try_from(n).ok())
    };
    let container_port = f.take(p, "containerPort").and_then(|field| port(p, field)).unwrap_or(0);
    let host_port = f.take(p, "hostPort").and_then(|field| port(p, field));
    let protocol = f.take(p, "protocol").and_then(|(path, v)| string(p, &path, v));
    let address = f.take(p, "address").and_then(|(path, v)| string(p, &path, v));
    Some(PortMappingSpec { container_port, host_port, protocol, address, unknown: f.rest() })
}

fn read_ignite(p: &mut Problems, path: &str, value: &Value) -> Option<IgniteSpec> {
    let mut f = Fields::of(p, path, value)?;
    let cpus = f.take(p, "cpus").and_then(|(path, v)| unsigned(p, &path, v, u64::MAX));
    let cpu_cap = f.take(p, "cpuCap").and_then(|(path, v)| positive_number(p, &path, v));
    let memory = f.take(p, "memory").and_then(|(path, v)| size(p, &path, v));
    let disk_size = f.take(p, "diskSize").and_then(|(path, v)| size(p, &path, v));
    let kernel = f.take(p, "kernel").and_then(|(path, v)| string(p, &path, v));
    let copy_files = match f.take(p, "copyFiles") {
        Some((path, v)) => match Fields::of(p, &path, v) {
            Some(files) => files
                .map
                .iter()
                .filter_map(|(from, to)| string(p, &join(&path, from), to).map(|to| (from.clone(), to)))
                .collect(),
            None => BTreeMap::new(),
        },
        None => BTreeMap::new(),
    };
    Some(IgniteSpec { cpus, cpu_cap, memory, disk_size, kernel, copy_files, unknown: f.rest() })
}

fn read_volume(p: &mut Problems, path: &str, value: &Value) -> Option<VolumeSpec> {
    let mut f = Fields::of(p, path, value)?;
    let kind = f.take(p, "type").and_then(|(path, v)| string(p, &path, v));
    let source = f.take(p, "source").and_then(|(path, v)| string(p, &path, v));
    let destination = f.take(p, "destination").and_then(|(path, v)| string(p, &path, v));
    let read_only = f.take(p, "readOnly").is_some_and(|(path, v)| boolean(p, &path, v));
    Some(VolumeSpec { kind, source, destination, read_only, unknown: f.rest() })
}
