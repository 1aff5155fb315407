//! Query-parameter parsing with errors that name the parameter.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use chrono::{DateTime, Utc};

use streamstats_actors::event::MAX_STREAM_ID_CHARS;

use super::errors::ApiError;
use super::{MAX_ROWS, PAGE_ROWS};

/// The query string of one request.
pub struct Params(pub HashMap<String, String>);

impl Params {
    /// The raw value of the first of `names` present.
    fn raw<'a>(&'a self, names: &[&'a str]) -> Option<(&'a str, &'a str)> {
        names
            .iter()
            .find_map(|n| self.0.get(*n).map(|v| (*n, v.as_str())))
    }

    /// An integer in `range`, `default` when absent; `names[0]` is the
    /// canonical name, the rest aliases.
    pub fn int(
        &self,
        names: &[&str],
        default: i64,
        range: RangeInclusive<i64>,
    ) -> Result<i64, ApiError> {
        let Some((name, raw)) = self.raw(names) else {
            return Ok(default);
        };
        match raw.trim().parse::<i64>() {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => Err(ApiError::BadParameter(format!(
                "{name} must be an integer from {} to {}, got {raw:?}",
                range.start(),
                range.end()
            ))),
        }
    }

    /// A string of 1 to `max_chars` characters Postgres can store, if present.
    pub fn text(&self, name: &str, max_chars: usize) -> Result<Option<String>, ApiError> {
        self.0
            .get(name)
            .map(|v| text(name, v, max_chars).map(str::to_owned))
            .transpose()
    }

    /// The `limit` (1 to [`MAX_ROWS`], default [`PAGE_ROWS`]) and `after`
    /// (a stream id) of a route paged by stream id.
    pub fn page(&self) -> Result<(i64, Option<String>), ApiError> {
        let limit = self.int(&["limit"], PAGE_ROWS, 1..=MAX_ROWS)?;
        let after = self.text("after", MAX_STREAM_ID_CHARS)?;
        Ok((limit, after))
    }

    /// One of `allowed`, `default` when absent.
    pub fn choice<'a>(
        &self,
        name: &str,
        allowed: &[&'a str],
        default: &'a str,
    ) -> Result<&'a str, ApiError> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => allowed.iter().copied().find(|a| a == v).ok_or_else(|| {
                ApiError::BadParameter(format!(
                    "{name} must be one of {}, got {v:?}",
                    allowed.join(", ")
                ))
            }),
        }
    }

    /// An RFC 3339 time, if present.
    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.0
            .get(name)
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        ApiError::BadParameter(format!("{name} must be an RFC 3339 time like 2025-12-20T18:00:00Z, got {v:?} ({e})"))
                    })
            })
            .transpose()
    }
}

/// `value` as the text parameter `name`: 1 to `max_chars` characters and no
/// NUL (Postgres text cannot hold one, so it is a bad parameter, not a
/// database failure).
pub fn text<'a>(name: &str, value: &'a str, max_chars: usize) -> Result<&'a str, ApiError> {
    let chars = value.chars().count();
    if !(1..=max_chars).contains(&chars) {
        return Err(ApiError::BadParameter(format!(
            "{name} must be 1 to {max_chars} characters, got {chars}"
        )));
    }
    if value.contains('\0') {
        return Err(ApiError::BadParameter(format!(
            "{name} must not contain a NUL character (\\u0000)"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_page_is_100_streams_unless_asked_for_up_to_1000() {
        let default = params(&[]).page().ok();
        assert_eq!(default, Some((PAGE_ROWS, None)));
        assert_eq!(PAGE_ROWS, 100);
        let asked = params(&[("limit", "1000"), ("after", "s7")]).page().ok();
        assert_eq!(asked, Some((1_000, Some("s7".to_owned()))));
        assert!(params(&[("limit", "1001")]).page().is_err());
    }

    #[test]
    fn integers_are_bounded_and_errors_name_the_parameter() {
        let p = params(&[("limit", "50"), ("minutes", "-1"), ("n", "x")]);
        assert_eq!(p.int(&["limit"], 10, 1..=100).ok(), Some(50));
        assert_eq!(p.int(&["absent"], 10, 1..=100).ok(), Some(10));
        let err = p.int(&["minutes"], 10, 1..=100).expect_err("negative");
        assert!(err.to_string().starts_with("minutes "), "{err}");
        let err = p
            .int(&["n", "limit"], 10, 1..=100)
            .expect_err("not a number");
        assert!(err.to_string().starts_with("n "), "{err}");
    }

    #[test]
    fn text_postgres_cannot_hold_is_a_bad_parameter() {
        let p = params(&[("stream_id", "a\0b"), ("after", "s1")]);
        let err = p.text("stream_id", 128).expect_err("NUL");
        assert!(err.to_string().starts_with("stream_id "), "{err}");
        assert!(err.to_string().contains("NUL"), "{err}");
        assert_eq!(p.text("after", 128).ok().flatten().as_deref(), Some("s1"));
        assert!(text("id", "", 128).is_err());
        assert!(text("id", "abc", 2).is_err());
    }

    #[test]
    fn aliases_are_accepted() {
        let p = params(&[("limit", "7")]);
        assert_eq!(p.int(&["n", "limit"], 10, 1..=100).ok(), Some(7));
    }

    #[test]
    fn choices_and_times() {
        let p = params(&[
            ("by", "chat_messages"),
            ("from", "2025-12-20T18:00:00+01:00"),
            ("to", "soon"),
        ]);
        assert_eq!(
            p.choice("by", &["a", "chat_messages"], "a").ok(),
            Some("chat_messages")
        );
        assert!(p.choice("by", &["a"], "a").is_err());
        assert_eq!(
            p.time("from").ok().flatten().map(|t| t.to_rfc3339()),
            Some("2025-12-20T17:00:00+00:00".to_owned())
        );
        assert!(p
            .time("to")
            .expect_err("bad")
            .to_string()
            .starts_with("to "));
    }
}
