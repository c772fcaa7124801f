//! Rules for passwords people choose.

use crate::Invalid;

/// Shortest accepted password, in characters.
pub const MIN_LEN: usize = 8;
/// Longest accepted password, in bytes: bounds the work of hashing hostile input.
pub const MAX_LEN: usize = 1024;

/// Checks a new password against the rules; says which rule it breaks.
pub fn check_new(field: &'static str, password: &str) -> Result<(), Invalid> {
    if password.chars().count() < MIN_LEN {
        return Err(Invalid::new(field, format!("must be at least {MIN_LEN} characters")));
    }
    if password.len() > MAX_LEN {
        return Err(Invalid::new(field, format!("must be at most {MAX_LEN} bytes")));
    }
    if password.chars().any(char::is_control) {
        return Err(Invalid::new(field, "must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(check_new("password", "short").is_err());
        assert!(check_new("password", "long enough").is_ok());
        assert!(check_new("password", &"x".repeat(MAX_LEN + 1)).is_err());
        assert!(check_new("password", "tab\there!").is_err());
    }
}
