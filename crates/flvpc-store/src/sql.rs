//! The one place where a query's text meets its dialect: placeholders.
//!
//! Queries are written once with `$1, $2, …` placeholders, which SQLite and PostgreSQL accept.
//! MySQL/MariaDB accept only `?`, bound by position. So every query goes through [`query`] (or
//! [`query_scalar`], [`query_as`], [`dynamic`]), which for MySQL rewrites each `$N` to `?`.
//!
//! That rewrite is only right when the placeholders appear in the text as `$1, $2, …, $n`, each
//! once and in that order (then the n-th `?` is the n-th bound value, as `$n` was). Every query is
//! written that way: a value used twice is bound twice. [`numbered_in_order`] checks it; a debug
//! assertion checks every query run on every dialect (so the tests on SQLite and PostgreSQL prove
//! the MySQL text too), and a unit test checks every SQL literal of this crate's source.

use crate::Dialect;
use sqlx::any::AnyArguments;
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Any, AssertSqlSafe, SqlSafeStr, SqlStr};

/// The text of `sql` for `dialect`.
pub(crate) fn text(dialect: Dialect, sql: &'static str) -> SqlStr {
    debug_assert!(numbered_in_order(sql).is_ok(), "{:?}: {sql}", numbered_in_order(sql));
    match dialect {
        Dialect::Mysql => AssertSqlSafe(question_marks(sql)).into_sql_str(),
        Dialect::Sqlite | Dialect::Postgres => sql.into_sql_str(),
    }
}

/// A query built at run time from this crate's constants (table and column names, never input).
pub(crate) fn dynamic(dialect: Dialect, sql: String) -> SqlStr {
    debug_assert!(numbered_in_order(&sql).is_ok(), "{:?}: {sql}", numbered_in_order(&sql));
    match dialect {
        Dialect::Mysql => AssertSqlSafe(question_marks(&sql)).into_sql_str(),
        Dialect::Sqlite | Dialect::Postgres => AssertSqlSafe(sql).into_sql_str(),
    }
}

/// `sqlx::query` in `dialect`.
pub(crate) fn query<'q>(dialect: Dialect, sql: &'static str) -> Query<'q, Any, AnyArguments> {
    sqlx::query(text(dialect, sql))
}

/// `sqlx::query_scalar` in `dialect`.
pub(crate) fn query_scalar<'q, O>(dialect: Dialect, sql: &'static str) -> QueryScalar<'q, Any, O, AnyArguments>
where
    (O,): for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
{
    sqlx::query_scalar(text(dialect, sql))
}

/// `sqlx::query_as` in `dialect`.
pub(crate) fn query_as<'q, O>(dialect: Dialect, sql: &'static str) -> QueryAs<'q, Any, O, AnyArguments>
where
    O: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
{
    sqlx::query_as(text(dialect, sql))
}

/// Calls `each(start, number)` for every `$N` placeholder outside quoted literals and identifiers.
fn placeholders(sql: &str, mut each: impl FnMut(usize, usize, u64)) {
    let bytes = sql.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if b == b'$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let end = (i + 1..bytes.len()).find(|&j| !bytes[j].is_ascii_digit()).unwrap_or(bytes.len());
                let number = sql[i + 1..end].parse().unwrap_or(u64::MAX);
                each(i, end, number);
                i = end;
                continue;
            }
            None => {}
        }
        i += 1;
    }
}

/// The number of placeholders, when they are `$1, $2, …, $n` in this order, each once; otherwise
/// what is wrong.
pub(crate) fn numbered_in_order(sql: &str) -> Result<u64, String> {
    let mut count = 0;
    let mut wrong = None;
    placeholders(sql, |_, _, number| {
        count += 1;
        if number != count && wrong.is_none() {
            wrong = Some(format!("placeholder number {count} is ${number}, not ${count}"));
        }
    });
    wrong.map_or(Ok(count), Err)
}

/// `sql` with every `$N` placeholder replaced by `?`.
fn question_marks(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    placeholders(sql, |start, end, _| {
        out.push_str(&sql[copied..start]);
        out.push('?');
        copied = end;
    });
    out.push_str(&sql[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_question_marks_outside_quotes() {
        assert_eq!(
            question_marks("SELECT a FROM t WHERE b = $1 AND c = '$2' AND \"$x\" = $2 LIMIT $3"),
            "SELECT a FROM t WHERE b = ? AND c = '$2' AND \"$x\" = ? LIMIT ?"
        );
        assert_eq!(question_marks("SELECT 1"), "SELECT 1");
        assert_eq!(numbered_in_order("VALUES ($1, $2, $10)"), Err("placeholder number 3 is $10, not $3".into()));
        assert_eq!(numbered_in_order("SET a = $2 WHERE b = $1").map_err(|_| ()), Err(()));
        assert_eq!(numbered_in_order("VALUES ($1, $1)").map_err(|_| ()), Err(()));
        assert_eq!(numbered_in_order("VALUES ($1, $2, $3)"), Ok(3));
    }

    /// Every string literal of this crate's source that holds a placeholder numbers them in order,
    /// each once: so the `?` text MySQL gets binds the same values as the `$N` text.
    #[test]
    fn every_query_of_the_crate_binds_its_placeholders_in_order_exactly_once() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("src dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("sql.rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("read source");
            for literal in string_literals(&source) {
                let mut any = false;
                placeholders(&literal, |_, _, _| any = true);
                if any {
                    checked += 1;
                    assert!(numbered_in_order(&literal).is_ok(), "{}: {literal:?}", path.display());
                }
            }
        }
        assert!(checked > 50, "found only {checked} queries with placeholders: is the scan broken?");
    }

    /// The contents of the ordinary `"…"` string literals of Rust `source` (escapes kept, line
    /// continuations joined), skipping comments and character literals.
    fn string_literals(source: &str) -> Vec<String> {
        let bytes = source.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'/' if bytes.get(i + 1) == Some(&b'/') => {
                    while i < bytes.len() && bytes[i] != b'\n' {
                        i += 1;
                    }
                }
                b'\'' if bytes.get(i + 2) == Some(&b'\'') => i += 3,
                b'\'' if bytes.get(i + 1) == Some(&b'\\') => {
                    i += 2;
                    while i < bytes.len() && bytes[i] != b'\'' {
                        i += 1;
                    }
                    i += 1;
                }
                b'"' => {
                    let mut literal = String::new();
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' {
                        if bytes[i] == b'\\' {
                            if bytes.get(i + 1) == Some(&b'\n') {
                                // A line continuation: the next line's leading spaces go too.
                                i += 2;
                                while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                                    i += 1;
                                }
                                continue;
                            }
                            literal.push(char::from(bytes[i]));
                            i += 1;
                        }
                        literal.push(char::from(bytes[i]));
                        i += 1;
                    }
                    out.push(literal);
                    i += 1;
                }
                _ => i += 1,
            }
        }
        out
    }
}
