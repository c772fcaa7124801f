//! The audit log's filter as people and scripts write it (the panel's form, the API's query):
//! checked and turned into the store's `AuditFilter`.

use super::error::{CoreError, CoreResult};
use flvpc_store::{AuditFilter, OUTCOME_ERROR};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

/// What a person asked for; empty strings mean "any".
#[derive(Debug, Clone, Default)]
pub struct AuditQuery<'a> {
    /// A login.
    pub user: Option<&'a str>,
    /// An action (`machine.start`) or a family of them (`machine.`).
    pub action: Option<&'a str>,
    /// `ok`, `error`, or an error code.
    pub outcome: Option<&'a str>,
    /// From this time on (RFC 3339, or a UTC date and time `2026-12-01T08:30`, or a date).
    pub since: Option<&'a str>,
    /// Until this time (same forms; a date alone means the end of that day).
    pub until: Option<&'a str>,
}

/// Longest filter text accepted: the stored fields are at most 512 bytes anyway.
const MAX_TEXT: usize = 512;

fn given(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

fn text(field: &str, value: Option<&str>) -> CoreResult<Option<String>> {
    match given(value) {
        Some(v) if v.len() > MAX_TEXT || v.chars().any(char::is_control) => Err(CoreError::Invalid(format!(
            "{field}: at most {MAX_TEXT} bytes without control characters; shorten the filter"
        ))),
        other => Ok(other.map(str::to_owned)),
    }
}

/// A time bound in ms since the epoch; `end_of_day` turns a bare date into the next midnight
/// (so `until=2026-12-01` includes that day).
fn instant(field: &str, value: Option<&str>, end_of_day: bool) -> CoreResult<Option<i64>> {
    let Some(v) = given(value) else { return Ok(None) };
    let minutes = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let seconds = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let day = format_description!("[year]-[month]-[day]");
    let at = if let Ok(t) = OffsetDateTime::parse(v, &Rfc3339) {
        t
    } else if let Ok(t) = PrimitiveDateTime::parse(v, &seconds).or_else(|_| PrimitiveDateTime::parse(v, &minutes)) {
        t.assume_utc()
    } else if let Ok(d) = Date::parse(v, &day) {
        let midnight = d.midnight().assume_utc();
        if end_of_day {
            midnight + time::Duration::DAY
        } else {
            midnight
        }
    } else {
        return Err(CoreError::Invalid(format!(
            "{field}: {v:?} is not a time; write 2026-12-01, 2026-12-01T08:30 (UTC) or 2026-12-01T08:30:00+01:00"
        )));
    };
    let ms = at.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms).map(Some).map_err(|_| CoreError::Invalid(format!("{field}: {v:?} is out of range")))
}

impl AuditQuery<'_> {
    /// The store's filter, or what is wrong with the query.
    pub fn filter(&self) -> CoreResult<AuditFilter> {
        let outcome = text("outcome", self.outcome)?;
        if let Some(o) = &outcome {
            if !o.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                return Err(CoreError::Invalid(format!(
                    "outcome: {o:?} is not one; use ok, {OUTCOME_ERROR} (every refusal or failure) or an error code such as forbidden"
                )));
            }
        }
        let since = instant("since", self.since, false)?;
        let until = instant("until", self.until, true)?;
        if let (Some(s), Some(u)) = (since, until) {
            if s >= u {
                return Err(CoreError::Invalid("since: must be before until; swap the two times".into()));
            }
        }
        Ok(AuditFilter { actor: text("user", self.user)?, action: text("action", self.action)?, outcome, since, until })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_in_the_forms_people_write() {
        let q = AuditQuery { since: Some("2026-12-01"), until: Some("2026-12-01"), ..Default::default() };
        let f = q.filter().expect("a day");
        assert_eq!(f.until.zip(f.since).map(|(u, s)| u - s), Some(86_400_000), "a bare until date includes its day");
        let q = AuditQuery {
            since: Some("2026-12-01T08:30"),
            until: Some("2026-12-01T10:30:00+01:00"),
            ..Default::default()
        };
        let f = q.filter().expect("times");
        assert_eq!(f.until.zip(f.since).map(|(u, s)| u - s), Some(3_600_000), "08:30 UTC is 09:30+01:00");
        let q = AuditQuery { since: Some("yesterday"), ..Default::default() };
        let err = q.filter().expect_err("not a time").message();
        assert!(err.contains("since") && err.contains("2026-12-01T08:30"), "{err}");
    }

    #[test]
    fn empty_fields_match_everything_and_bad_ones_are_refused() {
        let q = AuditQuery { user: Some(" "), action: Some(""), outcome: None, ..Default::default() };
        assert_eq!(q.filter().expect("empty"), AuditFilter::default());
        let q = AuditQuery { outcome: Some("ok' OR 1=1"), ..Default::default() };
        assert!(q.filter().is_err());
        let q = AuditQuery { since: Some("2026-12-02"), until: Some("2026-12-01"), ..Default::default() };
        assert!(q.filter().expect_err("backwards").message().contains("before until"));
        let q = AuditQuery { user: Some("bo\u{7}b"), action: Some("machine."), ..Default::default() };
        assert!(q.filter().is_err(), "control characters");
    }
}
