//! Renders the OpenAPI document as the Markdown API reference in `docs/api.md`.
//!
//! The reference is derived, never written by hand: everything in it (operations, parameters
//! with their rules, bodies, responses, error codes, schemas) comes from the document the server
//! serves, so it cannot say something the server's annotations do not.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The command that rewrites docs/api.md.
pub const REGENERATE: &str = "FLVPC_WRITE_API_DOCS=1 cargo test -p flvpc-server --test openapi api_reference";

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The Markdown reference for `doc`.
pub fn render(doc: &Value) -> String {
    let mut out = String::new();
    let title = doc["info"]["title"].as_str().unwrap_or("flvpc");
    let _ = writeln!(out, "# {title} REST API reference\n");
    let _ = writeln!(
        out,
        "<!-- Generated from the OpenAPI document the server serves at /api/v1/openapi.json, by \
         crates/flvpc-server/tests/openapi/markdown.rs. Do not edit: change the annotations in \
         crates/flvpc-server/src/api/ and run `{REGENERATE}`. -->\n"
    );
    let _ = writeln!(out, "{}\n", text(&doc["info"]["description"]));
    out.push_str(INTRO);
    errors_section(doc, &mut out);
    let operations = by_tag(doc);
    out.push_str("## Operations\n\n");
    for (tag, ops) in &operations {
        let _ = writeln!(out, "- {tag}: {}", ops.iter().map(|(m, p, _)| op_link(m, p)).collect::<Vec<_>>().join(", "));
    }
    out.push('\n');
    for (tag, ops) in &operations {
        let _ = writeln!(out, "### {tag}\n");
        for (method, path, op) in ops {
            operation(method, path, op, &mut out);
        }
    }
    schemas_section(doc, &mut out);
    out
}

const INTRO: &str = "All routes are under `/api/v1` and speak JSON unless an operation says otherwise. \
Sign in with `POST /api/v1/auth/login`, then send `Authorization: Bearer <token>` (or use a named API token from \
`POST /api/v1/tokens`). A name that breaks its rule (the patterns below) is refused before anything else \
happens; strings are measured in characters.\n\n";

/// Every error code the responses name, by status: from the backticked codes in their descriptions.
fn errors_section(doc: &Value, out: &mut String) {
    let mut codes: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for (_, _, op) in all_operations(doc) {
        for (status, response) in op["responses"].as_object().into_iter().flatten() {
            if !status.starts_with('4') && !status.starts_with('5') {
                continue;
            }
            let entry = codes.entry(status.clone()).or_default();
            let description = text(&response["description"]);
            for (i, part) in description.split('`').enumerate() {
                if i % 2 == 1 && part.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !part.is_empty() {
                    entry.insert(part.to_owned());
                }
            }
        }
    }
    out.push_str("## Errors\n\n");
    out.push_str(
        "Every refusal has a fitting status and the body `{\"error\": {\"code\": \"…\", \"message\": \"…\"}}` \
         ([ErrorBody](#schema-errorbody)): `code` is stable snake_case for scripts, `message` a sentence for \
         people that says what went wrong and what to do. 429 and 503 carry `Retry-After`. A 500 (`internal`) \
         is a fault of the server, logged there.\n\n",
    );
    out.push_str("| status | codes |\n|---|---|\n");
    for (status, set) in &codes {
        let list: Vec<String> = set.iter().map(|c| format!("`{c}`")).collect();
        let _ = writeln!(out, "| {status} | {} |", list.join(", "));
    }
    out.push('\n');
}

fn all_operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                all.push((method.to_owned(), path.clone(), op));
            }
        }
    }
    all
}

fn by_tag(doc: &Value) -> BTreeMap<String, Vec<(String, String, &Value)>> {
    let mut tags: BTreeMap<String, Vec<(String, String, &Value)>> = BTreeMap::new();
    for (method, path, op) in all_operations(doc) {
        let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
        tags.entry(tag).or_default().push((method, path, op));
    }
    tags
}

fn anchor(method: &str, path: &str) -> String {
    let raw = format!("{method}-{path}");
    raw.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

fn op_link(method: &str, path: &str) -> String {
    format!("[`{} {}`](#{})", method.to_uppercase(), path, anchor(method, path))
}

fn operation(method: &str, path: &str, op: &Value, out: &mut String) {
    let _ = writeln!(out, "<a id=\"{}\"></a>\n#### `{} {}`\n", anchor(method, path), method.to_uppercase(), path);
    let summary = text(&op["summary"]);
    let _ = writeln!(out, "{}\n", summary.replace('\n', " "));
    let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
    let auth = if secured { "bearer token" } else { "none" };
    let _ = writeln!(out, "Authentication: {auth}. Operation id: `{}`.\n", text(&op["operationId"]));
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        out.push_str("| parameter | in | type | required | description |\n|---|---|---|---|---|\n");
        for p in params {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                text(&p["name"]),
                text(&p["in"]),
                cell(&type_of(&p["schema"])),
                if p["required"] == true { "yes" } else { "no" },
                cell(&text(&p["description"]))
            );
        }
        out.push('\n');
    }
    if let Some(body) = op.get("requestBody") {
        let mut kinds = Vec::new();
        for (media, content) in body["content"].as_object().into_iter().flatten() {
            kinds.push(format!("`{media}`: {}", type_of(&content["schema"])));
        }
        let required = if body["required"] == true { "required" } else { "optional" };
        let _ = writeln!(out, "Request body ({required}): {}.", kinds.join("; "));
        if let Some(d) = body["description"].as_str() {
            let _ = writeln!(out, "{d}.");
        }
        out.push('\n');
    }
    out.push_str("| status | meaning | body |\n|---|---|---|\n");
    for (status, response) in op["responses"].as_object().into_iter().flatten() {
        let mut bodies = Vec::new();
        for (media, content) in response["content"].as_object().into_iter().flatten() {
            bodies.push(format!("`{media}` {}", type_of(&content["schema"])));
        }
        let body = if bodies.is_empty() { "—".to_owned() } else { bodies.join("; ") };
        let _ = writeln!(out, "| {status} | {} | {} |", cell(&text(&response["description"])), cell(&body));
    }
    out.push('\n');
}

fn schemas_section(doc: &Value, out: &mut String) {
    out.push_str("## Schemas\n\n");
    for (name, schema) in doc["components"]["schemas"].as_object().into_iter().flatten() {
        let _ = writeln!(out, "<a id=\"schema-{}\"></a>\n### {name}\n", name.to_ascii_lowercase());
        let description = text(&schema["description"]);
        if !description.is_empty() {
            let _ = writeln!(out, "{}\n", description.replace('\n', " "));
        }
        match schema.get("properties").and_then(Value::as_object) {
            Some(props) => {
                let required: Vec<&str> =
                    schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                out.push_str("| field | type | required | description |\n|---|---|---|---|\n");
                for (field, prop) in props {
                    let _ = writeln!(
                        out,
                        "| `{field}` | {} | {} | {} |",
                        cell(&type_of(prop)),
                        if required.contains(&field.as_str()) { "yes" } else { "no" },
                        cell(&field_description(prop))
                    );
                }
                if schema["additionalProperties"] == false {
                    out.push_str("\nOther fields are refused.\n");
                }
            }
            None => {
                let _ = writeln!(out, "Type: {}.", type_of(schema));
            }
        }
        out.push('\n');
    }
}

fn field_description(prop: &Value) -> String {
    let mut d = text(&prop["description"]);
    if d.is_empty() {
        if let Some(first) = prop["oneOf"].as_array().and_then(|v| v.first()) {
            d = text(&first["description"]);
        }
    }
    d.replace('\n', " ")
}

/// The JSON type of a schema, with its rules, or a link to a named schema.
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("[{name}](#schema-{})", name.to_ascii_lowercase());
    }
    if let Some(alternatives) = schema["oneOf"].as_array() {
        return alternatives.iter().map(type_of).collect::<Vec<_>>().join(" \\| ");
    }
    if schema.is_null() {
        return "any".to_owned();
    }
    let base = bare_type(schema);
    let base = if base == "array" { format!("array of {}", type_of(&schema["items"])) } else { base };
    let rules = rules_of(schema);
    if rules.is_empty() {
        base
    } else {
        format!("{base} ({rules})")
    }
}

fn bare_type(schema: &Value) -> String {
    let mut base = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" \\| "),
        _ => "any".to_owned(),
    };
    if let Some(format) = schema["format"].as_str() {
        base = format!("{base}, {format}");
    }
    base
}

fn rules_of(schema: &Value) -> String {
    let mut rules = Vec::new();
    if let Some(values) = schema["enum"].as_array() {
        rules.push(format!(
            "one of {}",
            values.iter().map(|v| format!("`{}`", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(p) = schema["pattern"].as_str() {
        rules.push(format!("pattern `{p}`"));
    }
    match (schema["minLength"].as_u64(), schema["maxLength"].as_u64()) {
        (Some(a), Some(b)) => rules.push(format!("{a}–{b} characters")),
        (Some(a), None) => rules.push(format!("at least {a} characters")),
        (None, Some(b)) => rules.push(format!("at most {b} characters")),
        (None, None) => {}
    }
    match (&schema["minimum"], &schema["maximum"]) {
        (Value::Number(a), Value::Number(b)) => rules.push(format!("{a}–{b}")),
        (Value::Number(a), _) => rules.push(format!("≥ {a}")),
        (_, Value::Number(b)) => rules.push(format!("≤ {b}")),
        _ => {}
    }
    rules.join("; ")
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().trim().to_owned()
}

/// Text that fits one Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('\n', " ").replace("\\|", "|").replace('|', "\\|")
}
