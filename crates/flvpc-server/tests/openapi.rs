//! The OpenAPI document tells the truth: it is valid OpenAPI (structural rules checked here,
//! and the real `openapi-spec-validator`), the rules it gives for names, roles, passwords and
//! quotas are the ones the running server enforces, every status the server answered with here
//! is documented, and docs/api.md is the document rendered as Markdown.

mod common;
#[path = "openapi/markdown.rs"]
mod markdown;

use common::{People, TestServer};
use regex_automata::meta::Regex;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

async fn server() -> TestServer {
    common::start_with(
        common::Backend::Sqlite,
        flvpc_server::Config::default(),
        Arc::new(flvpc_host::FakeEngine::new()),
    )
    .await
}

async fn document(server: &TestServer) -> Value {
    let reply = server.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(reply.status, 200, "openapi.json: {:?}", reply.body);
    reply.body
}

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Every (method, path, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if METHODS.contains(&method.as_str()) {
                out.push((method.clone(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// Every `$ref` anywhere in `v`, with where it was found.
fn refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "$ref" {
                    out.push((at.to_owned(), child.as_str().unwrap_or_default().to_owned()));
                } else {
                    refs(child, &format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                refs(child, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// The structural rules of OpenAPI 3 this document must keep (the validator below checks all of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_is_structurally_sound() {
    let server = server().await;
    let doc = document(&server).await;
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "not OpenAPI 3: {version}");
    let mut problems = Vec::new();
    let mut ids = BTreeSet::new();
    let ops = operations(&doc);
    assert!(ops.len() >= 30, "suspiciously few operations: {}", ops.len());
    for (method, path, op) in &ops {
        let at = format!("{} {path}", method.to_uppercase());
        let id = op["operationId"].as_str().unwrap_or_default();
        if id.is_empty() || !ids.insert(id.to_owned()) {
            problems.push(format!("{at}: operationId {id:?} is missing or not unique"));
        }
        let responses = op["responses"].as_object().filter(|r| !r.is_empty());
        let Some(responses) = responses else {
            problems.push(format!("{at}: no responses"));
            continue;
        };
        for (status, response) in responses {
            if response["description"].as_str().is_none_or(|d| d.trim().is_empty()) {
                problems.push(format!("{at}: response {status} has no description"));
            }
            if status.starts_with('4') {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                if schema != "#/components/schemas/ErrorBody" {
                    problems.push(format!("{at}: response {status} is not an ErrorBody"));
                }
            }
        }
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        if secured && !responses.contains_key("401") {
            problems.push(format!("{at}: needs a bearer token but does not document 401"));
        }
        // Path parameters: each {name} of the template declared, required, and nothing else.
        let in_template: BTreeSet<String> =
            path.split('{').skip(1).filter_map(|s| s.split_once('}')).map(|(name, _)| name.to_owned()).collect();
        let declared: BTreeSet<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .inspect(|p| {
                if p["required"] != true {
                    problems.push(format!("{at}: path parameter {} is not required", p["name"]));
                }
            })
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect();
        if in_template != declared {
            problems.push(format!("{at}: path parameters {declared:?} differ from the template's {in_template:?}"));
        }
    }
    let mut found = Vec::new();
    refs(&doc, "#", &mut found);
    assert!(found.len() > 50, "suspiciously few $refs: {}", found.len());
    for (at, reference) in found {
        if resolve(&doc, &reference).is_none() {
            problems.push(format!("{at}: $ref {reference} does not resolve"));
        }
    }
    assert!(problems.is_empty(), "the OpenAPI document breaks OpenAPI's rules:\n{}", problems.join("\n"));
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `openapi-spec-validator`: FLVPC_OPENAPI_VALIDATOR, else the one `scripts/dev.sh test` installs
/// under target/py, else the one on PATH.
fn validator() -> PathBuf {
    if let Some(path) = std::env::var_os("FLVPC_OPENAPI_VALIDATOR") {
        return PathBuf::from(path);
    }
    let installed = workspace_root().join("target/py/bin/openapi-spec-validator");
    if installed.exists() {
        return installed;
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|d| d.join("openapi-spec-validator")).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        panic!(
            "openapi-spec-validator is not installed. `bash scripts/dev.sh test` installs it into target/py; \
             by hand: python3 -m venv target/py && target/py/bin/pip install openapi-spec-validator==0.9.0 \
             (or set FLVPC_OPENAPI_VALIDATOR to its path)"
        )
    })
}

/// The real validator accepts the document the server serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_spec_validator_accepts_the_document() {
    let server = server().await;
    let doc = document(&server).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).expect("json")).expect("write the document");
    let tool = validator();
    let output = std::process::Command::new(&tool)
        .args(["--validation-errors", "all"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "openapi-spec-validator refuses the document:\n{stdout}\n{stderr}");
    assert!(stdout.contains("OK"), "the validator did not say OK: {stdout}\n{stderr}");
}

/// Whether `schema` (with `$ref`s resolved in `doc`) allows `value`: the keywords this document uses.
fn allows(doc: &Value, schema: &Value, value: &Value) -> bool {
    if let Some(reference) = schema["$ref"].as_str() {
        return allows(doc, resolve(doc, reference).expect("$ref resolves"), value);
    }
    if let Some(alternatives) = schema["oneOf"].as_array() {
        return alternatives.iter().filter(|a| allows(doc, a, value)).count() == 1;
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let type_ok = types.is_empty()
        || types.iter().any(|t| match *t {
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "object" => value.is_object(),
            "array" => value.is_array(),
            _ => false,
        });
    if !type_ok {
        return false;
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(value) {
            return false;
        }
    }
    if let Some(s) = value.as_str() {
        let n = s.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|min| n < min)
            || schema["maxLength"].as_u64().is_some_and(|max| n > max)
        {
            return false;
        }
        if let Some(pattern) = schema["pattern"].as_str() {
            if !Regex::new(pattern).expect("pattern compiles").is_match(s) {
                return false;
            }
        }
    }
    if let Some(n) = value.as_i64().map(i128::from).or(value.as_u64().map(i128::from)) {
        let bound = |v: &Value| v.as_i64().map(i128::from).or(v.as_u64().map(i128::from));
        if bound(&schema["minimum"]).is_some_and(|min| n < min) || bound(&schema["maximum"]).is_some_and(|max| n > max)
        {
            return false;
        }
    }
    true
}

/// Where a row's value goes, and so which schema of the document rules it.
enum Place {
    /// A top-level field of the JSON request body.
    Body(&'static str),
    /// A path parameter.
    Path(&'static str),
    /// A query parameter.
    Query(&'static str),
}

fn schema_of<'a>(doc: &'a Value, method: &str, route: &str, place: &Place) -> &'a Value {
    let op = &doc["paths"][route][method];
    assert!(op.is_object(), "no operation {method} {route} in the document");
    let field_schema = match place {
        Place::Body(field) => {
            let body = &op["requestBody"]["content"]["application/json"]["schema"];
            let body = body["$ref"].as_str().and_then(|r| resolve(doc, r)).unwrap_or(body);
            &body["properties"][*field]
        }
        Place::Path(name) | Place::Query(name) => {
            let params = op["parameters"].as_array().expect("parameters");
            let param = params.iter().find(|p| p["name"] == *name).expect("parameter declared");
            &param["schema"]
        }
    };
    assert!(field_schema.is_object(), "{method} {route}: no schema for its value");
    field_schema
}

/// Percent-encodes a path segment.
fn segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'-' { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Who sends a row's requests.
#[derive(Clone, Copy)]
enum Who {
    Root,
    Alice,
}

/// One field or parameter whose rule the server enforces: values the schema allows, which the
/// server must take (or refuse for a reason other than their shape, such as 404 or 409), and
/// values the schema forbids, which it must refuse with `refused`.
struct Row {
    method: &'static str,
    route: &'static str,
    place: Place,
    who: Who,
    allowed: Vec<Value>,
    ok: &'static [u16],
    forbidden: Vec<Value>,
    refused: u16,
    request: Request,
}

/// The request path and body for the i-th value of a row, given fresh public keys.
type Request = fn(&Value, usize, &[String]) -> (String, Option<Value>);

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn rows() -> Vec<Row> {
    let long = |first: &str, fill: &str, n: usize| json!(format!("{first}{}", fill.repeat(n - 1)));
    vec![
        Row {
            method: "post",
            route: "/api/v1/users",
            place: Place::Body("login"),
            who: Who::Root,
            allowed: vec![json!("a"), json!("x_1-2.b"), long("z", "9", 32)],
            ok: &[201],
            forbidden: vec![json!(""), json!("Alice"), json!("1abc"), json!("a b"), json!("é"), long("z", "9", 33)],
            refused: 422,
            request: |v, _, _| ("/api/v1/users".into(), Some(json!({"login": v, "password": "password-1"}))),
        },
        Row {
            method: "post",
            route: "/api/v1/users",
            place: Place::Body("password"),
            who: Who::Root,
            allowed: vec![json!("eight ch"), json!("x".repeat(1024)), json!("é".repeat(512))],
            ok: &[201],
            forbidden: vec![json!("seven c"), json!("tab\there!"), json!("del\u{7f}ete!!"), json!("x".repeat(1025))],
            refused: 422,
            request: |v, i, _| ("/api/v1/users".into(), Some(json!({"login": format!("pw{i}"), "password": v}))),
        },
        Row {
            method: "put",
            route: "/api/v1/users/{login}/password",
            place: Place::Body("password"),
            who: Who::Root,
            allowed: vec![json!("new password"), json!("ü".repeat(512))],
            ok: &[204],
            forbidden: vec![json!(""), json!("nul\0nul-nul"), json!("x".repeat(1025))],
            refused: 422,
            request: |v, _, _| ("/api/v1/users/dave/password".into(), Some(json!({"password": v}))),
        },
        Row {
            method: "delete",
            route: "/api/v1/users/{login}",
            place: Place::Path("login"),
            who: Who::Root,
            allowed: vec![json!("nobody"), json!("n.o_b-o.dy")],
            ok: &[404],
            forbidden: vec![json!("Nobody"), json!("no body"), long("n", "o", 33)],
            refused: 422,
            request: |v, _, _| (format!("/api/v1/users/{}", segment(s(v))), None),
        },
        Row {
            method: "post",
            route: "/api/v1/namespaces",
            place: Place::Body("name"),
            who: Who::Root,
            allowed: vec![json!("a"), json!("a-b-1"), long("n", "x", 31)],
            ok: &[201],
            forbidden: vec![json!(""), json!("Team"), json!("te_am"), json!("a.b"), json!("-a"), long("n", "x", 32)],
            refused: 422,
            request: |v, _, _| ("/api/v1/namespaces".into(), Some(json!({"name": v}))),
        },
        Row {
            method: "get",
            route: "/api/v1/namespaces/{ns}",
            place: Place::Path("ns"),
            who: Who::Root,
            allowed: vec![json!("red"), json!("no-such-ns")],
            ok: &[200, 404],
            forbidden: vec![json!("Red"), json!("re.d"), long("n", "x", 32)],
            refused: 404,
            request: |v, _, _| (format!("/api/v1/namespaces/{}", segment(s(v))), None),
        },
        Row {
            method: "delete",
            route: "/api/v1/namespaces/{ns}",
            place: Place::Path("ns"),
            who: Who::Root,
            allowed: vec![json!("no-such-ns")],
            ok: &[404],
            forbidden: vec![json!("Red"), json!("r_d")],
            refused: 422,
            request: |v, _, _| (format!("/api/v1/namespaces/{}", segment(s(v))), None),
        },
        Row {
            method: "put",
            route: "/api/v1/namespaces/{ns}/quota",
            place: Place::Body("machines"),
            who: Who::Root,
            allowed: vec![json!(0), json!(5), json!(null), json!(i64::MAX), json!(u64::MAX)],
            ok: &[200],
            forbidden: vec![json!(-1), json!(1.5), json!("5"), json!(18_446_744_073_709_551_616.0_f64)],
            refused: 400,
            request: |v, _, _| ("/api/v1/namespaces/red/quota".into(), Some(json!({"machines": v}))),
        },
        Row {
            method: "put",
            route: "/api/v1/namespaces/{ns}/members/{login}",
            place: Place::Body("role"),
            who: Who::Root,
            allowed: vec![json!("admin"), json!("user")],
            ok: &[200, 201],
            forbidden: vec![json!("Admin"), json!("root"), json!("")],
            refused: 422,
            request: |v, _, _| ("/api/v1/namespaces/blue/members/dave".into(), Some(json!({"role": v}))),
        },
        Row {
            method: "put",
            route: "/api/v1/namespaces/{ns}/members/{login}",
            place: Place::Path("login"),
            who: Who::Root,
            allowed: vec![json!("nobody")],
            ok: &[404],
            forbidden: vec![json!("No-Body"), json!("1x")],
            refused: 422,
            request: |v, _, _| {
                (format!("/api/v1/namespaces/red/members/{}", segment(s(v))), Some(json!({"role": "user"})))
            },
        },
        Row {
            method: "post",
            route: "/api/v1/tokens",
            place: Place::Body("name"),
            who: Who::Alice,
            allowed: vec![json!("ci"), json!("A.b_c@d-e"), long("T", "0", 64)],
            ok: &[201],
            forbidden: vec![json!(""), json!(".ci"), json!("c i"), json!("c/i"), long("T", "0", 65)],
            refused: 422,
            request: |v, _, _| ("/api/v1/tokens".into(), Some(json!({"name": v}))),
        },
        Row {
            method: "delete",
            route: "/api/v1/tokens/{name}",
            place: Place::Path("name"),
            who: Who::Alice,
            allowed: vec![json!("no-such-token")],
            ok: &[404],
            forbidden: vec![json!("_x"), json!("a b")],
            refused: 422,
            request: |v, _, _| (format!("/api/v1/tokens/{}", segment(s(v))), None),
        },
        Row {
            method: "post",
            route: "/api/v1/keys",
            place: Place::Body("name"),
            who: Who::Alice,
            allowed: vec![json!("laptop@home"), json!("K"), long("k", "_", 64)],
            ok: &[201],
            forbidden: vec![json!(""), json!(".x"), json!("a'b"), json!("<script>"), long("k", "_", 65)],
            refused: 422,
            // The i-th allowed value gets the i-th fresh key, so none conflicts with another.
            request: |v, i, keys| ("/api/v1/keys".into(), Some(json!({"name": v, "public_key": keys[i % keys.len()]}))),
        },
        Row {
            method: "delete",
            route: "/api/v1/keys/{name}",
            place: Place::Path("name"),
            who: Who::Alice,
            allowed: vec![json!("no-such-key")],
            ok: &[404],
            forbidden: vec![json!("-x"), json!("a\"b")],
            refused: 422,
            request: |v, _, _| (format!("/api/v1/keys/{}", segment(s(v))), None),
        },
        Row {
            method: "post",
            route: "/api/v1/namespaces/{ns}/machines/{name}/stop",
            place: Place::Path("name"),
            who: Who::Alice,
            allowed: vec![json!("node0"), json!("0"), json!(format!("m{}0", "-".repeat(61)))],
            ok: &[404],
            forbidden: vec![json!("-a"), json!("a-"), json!("Node0"), json!("a.b"), long("m", "x", 64)],
            refused: 404,
            request: |v, _, _| (format!("/api/v1/namespaces/red/machines/{}/stop", segment(s(v))), None),
        },
        Row {
            method: "get",
            route: "/api/v1/audit",
            place: Place::Query("namespace"),
            who: Who::Root,
            allowed: vec![json!("red"), json!("no-such-ns")],
            ok: &[200],
            forbidden: vec![json!("Red"), json!("r_d")],
            refused: 404,
            request: |v, _, _| (format!("/api/v1/audit?namespace={}", segment(s(v))), None),
        },
    ]
}

/// For each rule the server enforces: what the schema allows is taken, what it forbids is refused,
/// and every status seen is one the operation documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_rules_are_what_the_server_enforces() {
    let server = server().await;
    let doc = document(&server).await;
    let people: People = common::standard_fixture(&server).await;
    let keys: Vec<String> = (0..3).map(|i| common::ssh_keygen("ed25519", None, &format!("k{i}"))).collect();
    let mut problems = Vec::new();
    let mut sent = 0;
    for row in rows() {
        let schema = schema_of(&doc, row.method, row.route, &row.place);
        let documented: Vec<u16> = doc["paths"][row.route][row.method]["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .filter_map(|k| k.parse().ok())
            .collect();
        let token = match row.who {
            Who::Root => &people.root,
            Who::Alice => &people.alice,
        };
        let method = Method::from_bytes(row.method.to_uppercase().as_bytes()).expect("method");
        let cases = row.allowed.iter().map(|v| (v, true)).chain(row.forbidden.iter().map(|v| (v, false)));
        for (i, (value, expect_allowed)) in cases.enumerate() {
            let at = format!("{} {} with {value}", row.method.to_uppercase(), row.route);
            if allows(&doc, schema, value) != expect_allowed {
                let says = if expect_allowed { "forbids" } else { "allows" };
                problems.push(format!("{at}: the schema {says} it"));
                continue;
            }
            let (path, body) = (row.request)(value, i, &keys);
            let reply = server.call(method.clone(), &path, Some(token), body).await;
            sent += 1;
            let status = reply.status.as_u16();
            let wanted: &[u16] = if expect_allowed { row.ok } else { &[row.refused] };
            if !wanted.contains(&status) {
                problems.push(format!("{at}: answered {status}, expected one of {wanted:?}: {}", reply.body));
            }
            if !documented.contains(&status) {
                problems.push(format!("{at}: answered {status}, which the operation does not document"));
            }
            if !expect_allowed && status == 422 && reply.body["error"]["code"] != "invalid" {
                problems.push(format!("{at}: refused with code {} instead of invalid", reply.body["error"]["code"]));
            }
        }
    }
    assert!(sent > 80, "only {sent} requests sent");
    assert!(problems.is_empty(), "schema and server disagree:\n{}", problems.join("\n"));
}

/// docs/api.md is the served document rendered (see openapi/markdown.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_reference_is_up_to_date() {
    let server = server().await;
    let doc = document(&server).await;
    let rendered = markdown::render(&doc);
    let file = workspace_root().join("docs/api.md");
    if std::env::var_os("FLVPC_WRITE_API_DOCS").is_some() {
        std::fs::write(&file, &rendered).expect("write docs/api.md");
    }
    let on_disk = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        on_disk == rendered,
        "docs/api.md is not the OpenAPI document the server serves: regenerate it with\n    {}\n",
        markdown::REGENERATE
    );
    for (method, path, _) in operations(&doc) {
        assert!(rendered.contains(&format!("`{} {path}`", method.to_uppercase())), "{method} {path} missing");
    }
}

/// A route with its parameters filled: names of the standard fixture, or (`absent`) names of
/// nothing, so that deletes and password changes leave the fixture as it was.
fn fill(route: &str, absent: bool) -> String {
    let (ns, login) = if absent { ("gone", "nobody") } else { ("red", "bob") };
    route
        .replace("{ns}", ns)
        .replace("{login}", login)
        .replace("/machines/{name}", "/machines/node0")
        .replace("{name}", "none")
        .replace("{id}", "0")
}

/// Every operation, called by everyone of the standard fixture (and no one) with an empty JSON
/// object as its body, answers only with statuses its description lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_only_documented_statuses() {
    let server = server().await;
    let doc = document(&server).await;
    let people = common::standard_fixture(&server).await;
    let dave = server.login("dave", &common::password_of("dave")).await;
    let callers = [None, Some(&dave), Some(&people.bob), Some(&people.carol), Some(&people.alice), Some(&people.root)];
    let mut problems = Vec::new();
    let mut sent = 0;
    let mut all = operations(&doc);
    // Signing out ends the callers' sessions: last.
    all.sort_by_key(|(_, route, _)| route.ends_with("/logout"));
    for (method, route, op) in all {
        // A stream never ends: only its status is read.
        let streams = op["responses"]["200"]["content"].get("text/event-stream").is_some();
        let absent = method == "delete" || route.ends_with("/password");
        let body = op.get("requestBody").map(|_| json!({}));
        let http = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        for token in callers {
            let path = fill(&route, absent);
            let (status, answer) = if streams {
                let mut request = reqwest::Client::new().get(format!("{}{path}", server.base));
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                (request.send().await.expect("request").status(), Value::Null)
            } else {
                let reply = server.call(http.clone(), &path, token.map(String::as_str), body.clone()).await;
                (reply.status, reply.body)
            };
            sent += 1;
            let status = status.as_u16().to_string();
            if op["responses"].get(&status).is_none() {
                problems
                    .push(format!("{} {route}: answered {status}, not documented: {answer}", method.to_uppercase()));
            }
        }
    }
    assert!(sent > 100, "only {sent} requests sent");
    assert!(problems.is_empty(), "statuses the document does not list:\n{}", problems.join("\n"));
}
