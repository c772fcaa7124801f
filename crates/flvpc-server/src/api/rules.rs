//! The input rules the server enforces, as named OpenAPI schemas.
//!
//! A request field or path parameter that the model validates (`flvpc_model::names`,
//! `MachineName`, `Role`, `password`) is typed in the document by one of these schemas, so a
//! client (or a generator, or schemathesis) knows the rule before it sends a request. The
//! patterns are ASCII-only and anchored, so they mean the same in ECMA-262, Rust and Python;
//! the unit tests below check each one against the model's own parser, and
//! `tests/openapi.rs` checks them against the running server.

use std::borrow::Cow;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// `flvpc_model::Login`.
pub const LOGIN: &str = "^[a-z][a-z0-9._-]{0,31}$";
/// `flvpc_model::NamespaceName`.
pub const NAMESPACE: &str = "^[a-z][a-z0-9-]{0,30}$";
/// `flvpc_model::KeyName` and `flvpc_model::TokenName` (one rule for both labels).
pub const LABEL: &str = "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$";
/// `flvpc_model::MachineName`: an RFC 1123 label.
pub const MACHINE: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
/// `flvpc_model::password::check_new`: no control characters (Unicode category Cc).
pub const NO_CONTROL: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";
/// Longest new password the schema allows, in characters. The server counts UTF-8 bytes, which
/// JSON Schema cannot express: the same number in characters is exact for ASCII passwords, and a
/// longer one is refused on both sides; only a long non-ASCII password can pass the schema and be
/// refused (its description says so). A quarter of it would be exact the other way round, and would
/// refuse in the schema most of the long passwords the server takes.
pub const PASSWORD_MAX_CHARS: usize = flvpc_model::password::MAX_LEN;

fn string_rule(description: &str, pattern: &str, min: usize, max: usize) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(pattern))
        .min_length(Some(min))
        .max_length(Some(max))
        .into()
}

/// Declares a unit struct whose OpenAPI schema is a named string rule.
macro_rules! string_schema {
    ($(#[$doc:meta])* $ty:ident, $description:expr, $pattern:expr, $min:expr, $max:expr) => {
        $(#[$doc])*
        pub struct $ty;

        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                string_rule($description, $pattern, $min, $max)
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($ty))
            }
        }
    };
}

string_schema!(
    /// A user's login.
    Login,
    "A login: a lowercase letter, then up to 31 of a-z 0-9 . _ -",
    LOGIN,
    1,
    32
);
string_schema!(
    /// A namespace's name.
    NamespaceName,
    "A namespace name: a lowercase letter, then up to 30 of a-z 0-9 -",
    NAMESPACE,
    1,
    31
);
string_schema!(
    /// An SSH key's name.
    KeyName,
    "An SSH key's name: a letter or digit, then up to 63 of A-Z a-z 0-9 . _ @ -",
    LABEL,
    1,
    64
);
string_schema!(
    /// An API token's name.
    TokenName,
    "An API token's name: a letter or digit, then up to 63 of A-Z a-z 0-9 . _ @ -",
    LABEL,
    1,
    64
);
string_schema!(
    /// A machine's name in its namespace.
    MachineName,
    "A machine name (its host name): 1-63 of a-z 0-9 -, not starting or ending with -",
    MACHINE,
    1,
    63
);
string_schema!(
    /// A password being set.
    NewPassword,
    "A new password: at least 8 characters, without control characters, at most 1024 bytes in UTF-8 (1024 \
     characters when they are ASCII; fewer when some take several bytes)",
    NO_CONTROL,
    flvpc_model::password::MIN_LEN,
    PASSWORD_MAX_CHARS
);

/// A role in a namespace.
pub struct Role;

impl PartialSchema for Role {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A role in a namespace: `admin` manages its machines, `user` uses and starts/stops them"))
            .enum_values(Some([flvpc_model::Role::Admin.as_str(), flvpc_model::Role::User.as_str()]))
            .into()
    }
}

impl ToSchema for Role {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Role")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flvpc_model::{KeyName, Login, MachineName, NamespaceName, TokenName};
    use regex_automata::meta::Regex;

    /// Every string of up to `len` characters over `alphabet`, plus a few long ones.
    fn corpus(alphabet: &[char], len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut layer = vec![String::new()];
        for _ in 0..len {
            layer = layer.iter().flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}"))).collect();
            all.extend(layer.iter().cloned());
        }
        for n in [30, 31, 32, 33, 62, 63, 64, 65] {
            for c in alphabet {
                all.push(format!("a{}", c.to_string().repeat(n - 1)));
                all.push(format!("{}a", c.to_string().repeat(n - 1)));
            }
        }
        all
    }

    const ALPHABET: &[char] =
        &['a', 'z', 'A', 'Z', '0', '9', '-', '.', '_', '@', ' ', '/', '\n', '\0', 'é', '$', '\u{85}'];

    fn agree(pattern: &str, parse: fn(&str) -> bool) {
        let re = Regex::new(pattern).expect("pattern compiles");
        for s in corpus(ALPHABET, 3) {
            assert_eq!(re.is_match(&s), parse(&s), "pattern {pattern} and the model disagree on {s:?}");
        }
    }

    #[test]
    fn name_patterns_are_the_models_rules() {
        agree(LOGIN, |s| Login::parse(s).is_ok());
        agree(NAMESPACE, |s| NamespaceName::parse(s).is_ok());
        agree(LABEL, |s| KeyName::parse(s).is_ok());
        agree(LABEL, |s| TokenName::parse(s).is_ok());
        agree(MACHINE, |s| MachineName::parse(s).is_ok());
    }

    #[test]
    fn the_password_schema_is_the_models_rule_but_for_bytes() {
        use flvpc_model::password::{check_new, MAX_LEN, MIN_LEN};
        let re = Regex::new(NO_CONTROL).expect("pattern compiles");
        let schema_allows = |s: &str| re.is_match(s) && (MIN_LEN..=PASSWORD_MAX_CHARS).contains(&s.chars().count());
        let mut samples: Vec<String> = corpus(ALPHABET, 2).into_iter().map(|s| format!("password{s}")).collect();
        samples.extend(corpus(ALPHABET, 2).into_iter().map(|s| format!("{s}{}", "x".repeat(MAX_LEN - 2))));
        samples.extend(["x".repeat(7), "x".repeat(MAX_LEN + 1), "é".repeat(MAX_LEN / 2), "é".repeat(MAX_LEN / 2 + 1)]);
        samples.extend(["tab\there!".to_owned(), "del\u{7f}eted!".to_owned(), "c1\u{9f}control".to_owned()]);
        for s in samples {
            let accepted = check_new("password", &s).is_ok();
            // The one difference the description names: characters are counted, the server counts bytes.
            if s.len() <= MAX_LEN {
                assert_eq!(schema_allows(&s), accepted, "schema and model disagree on {s:?}");
            } else {
                assert!(!accepted, "{s:?} is longer than the model takes");
            }
        }
    }
}
