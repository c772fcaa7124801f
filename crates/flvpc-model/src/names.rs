//! Names that people choose: logins, namespaces, key and token names.
//!
//! Every name is checked once, when it enters the system, and then carried as a
//! newtype so that no unchecked string can reach SQL, a file name, a Docker
//! object or a log line.

use crate::Invalid;
use std::fmt;

/// Checks `value` against a simple character-class grammar: a first character
/// accepted by `first`, then characters accepted by `rest`, with a length in `1..=max`.
fn check(
    field: &'static str,
    value: &str,
    max: usize,
    first: fn(char) -> bool,
    rest: fn(char) -> bool,
    rule: &str,
) -> Result<(), Invalid> {
    let mut chars = value.chars();
    let Some(head) = chars.next() else {
        return Err(Invalid::new(field, format!("must not be empty ({rule})")));
    };
    if value.chars().count() > max {
        return Err(Invalid::new(field, format!("is longer than {max} characters ({rule})")));
    }
    if !first(head) {
        return Err(Invalid::new(field, format!("must start with {}", first_rule(rule))));
    }
    if let Some(bad) = chars.find(|c| !rest(*c)) {
        return Err(Invalid::new(field, format!("may not contain {bad:?} ({rule})")));
    }
    Ok(())
}

fn first_rule(rule: &str) -> &str {
    rule.split(", then").next().unwrap_or(rule)
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(String);

        impl $ty {
            /// The validated name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = Invalid;
            fn try_from(value: &str) -> Result<Self, Invalid> {
                Self::parse(value)
            }
        }
    };
}

name_type!(
    /// A user's login: `^[a-z][a-z0-9._-]{0,31}$`. Used as the SSH user name at the gateway.
    Login
);
name_type!(
    /// A namespace name: `^[a-z][a-z0-9-]{0,30}$`. Becomes part of Docker names and host names.
    NamespaceName
);
name_type!(
    /// The name of a user's SSH key: 1–64 of `A-Z a-z 0-9 . _ @ -`, starting with a letter or digit. Unique per user.
    KeyName
);
name_type!(
    /// The name of an API token: same rule as a key name. Unique per user.
    TokenName
);

fn lower_alpha(c: char) -> bool {
    c.is_ascii_lowercase()
}

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

impl Login {
    /// Validates a login.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        check(
            "login",
            value,
            32,
            lower_alpha,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'),
            "a lowercase letter, then up to 31 of a-z 0-9 . _ -",
        )?;
        Ok(Self(value.to_owned()))
    }
}

impl NamespaceName {
    /// Validates a namespace name.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        check_namespace_like("name", value)?;
        Ok(Self(value.to_owned()))
    }
}

/// The namespace rule, `^[a-z][a-z0-9-]{0,30}$`, for `field`: also the rule of host ids, which
/// end up in the same places (labels, names, log lines).
pub(crate) fn check_namespace_like(field: &'static str, value: &str) -> Result<(), Invalid> {
    check(
        field,
        value,
        31,
        lower_alpha,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        "a lowercase letter, then up to 30 of a-z 0-9 -",
    )
}

fn label_rest(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-')
}

impl KeyName {
    /// Validates a key name.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        check("name", value, 64, alnum, label_rest, "a letter or digit, then up to 63 of A-Z a-z 0-9 . _ @ -")?;
        Ok(Self(value.to_owned()))
    }
}

impl TokenName {
    /// Validates a token name.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        check("name", value, 64, alnum, label_rest, "a letter or digit, then up to 63 of A-Z a-z 0-9 . _ @ -")?;
        Ok(Self(value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins() {
        for ok in ["a", "alice", "bob.smith", "x_1-2", "abcdefghijklmnopqrstuvwxyz012345"] {
            assert!(Login::parse(ok).is_ok(), "{ok}");
        }
        for bad in
            ["", "Alice", "1abc", "-a", "a b", "a;rm", "a/b", "é", "abcdefghijklmnopqrstuvwxyz0123456", "a\n", "a\0"]
        {
            assert!(Login::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn namespaces_follow_the_contract_regex() {
        assert!(NamespaceName::parse("team1").is_ok());
        assert!(NamespaceName::parse("a-b-c").is_ok());
        assert!(NamespaceName::parse(&"a".repeat(31)).is_ok());
        assert!(NamespaceName::parse(&"a".repeat(32)).is_err());
        for bad in ["", "Team", "1team", "te_am", "te.am", "../x", "a b", "$(x)"] {
            let err = NamespaceName::parse(bad).expect_err(bad);
            assert_eq!(err.field, "name");
        }
    }

    #[test]
    fn key_names() {
        assert!(KeyName::parse("laptop@home").is_ok());
        assert!(KeyName::parse("Work.Key_2").is_ok());
        for bad in ["", ".x", "a b", "a'b", "a\"b", "<script>", &"k".repeat(65)] {
            assert!(KeyName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let err = Login::parse("Bob").expect_err("uppercase");
        assert_eq!(err.to_string(), "login: must start with a lowercase letter");
        let err = Login::parse("bob!").expect_err("bang");
        assert!(err.message.contains("'!'"), "{}", err.message);
    }
}
