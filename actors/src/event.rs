//! The event contract (SPEC §2): one JSON object per Kafka message, parsed
//! from raw bytes into a typed [`Event`] or rejected with a [`RejectReason`].
//!
//! Money never passes through `f64`: the donation amount is read from its
//! exact JSON text and held as integer cents. Timestamps of any offset are
//! normalised to UTC.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event_scan::Scanned;

/// Largest payload parsed; bigger messages are rejected unread.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Longest `stream_id`, in characters (SPEC §2).
pub const MAX_STREAM_ID_CHARS: usize = 128;
/// Longest `event_id` and `user_id`, in characters.
pub const MAX_ID_CHARS: usize = 256;
/// Largest single donation accepted, in cents (one billion dollars).
pub const MAX_AMOUNT_CENTS: i64 = 100_000_000_000;
/// Largest `message_len` accepted.
pub const MAX_MESSAGE_LEN: i64 = u32::MAX as i64;
/// Default of `MAX_FUTURE_SKEW`: how far an event time may lie ahead of
/// its Kafka message timestamp (the log's clock, not the consumer's).
pub const DEFAULT_MAX_FUTURE_SKEW: TimeDelta = TimeDelta::minutes(5);

/// A stream or user id: ids of up to 24 bytes are held inline, so the
/// usual short ids cost no allocation per event and no heap block in a
/// presence set.
pub type Id = compact_str::CompactString;

/// A valid event, as the window model consumes it. Its `event_id` is
/// validated by the parser but not kept: nothing uses it (events are not
/// de-duplicated by id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Event time, normalised to UTC.
    pub ts: DateTime<Utc>,
    /// The stream the event belongs to (also the Kafka key).
    pub stream_id: Id,
    /// What happened, with the fields that kind requires.
    pub kind: EventKind,
}

/// The event types of SPEC §2 with the fields each requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The stream went live.
    StreamStart,
    /// The stream ended; every viewer is gone.
    StreamStop,
    /// A user started watching.
    ViewerJoin { user_id: Id },
    /// A user stopped watching.
    ViewerLeave { user_id: Id },
    /// A user wrote a chat message of `message_len` characters.
    ChatMessage { user_id: Id, message_len: i64 },
    /// A user donated `amount_cents` US cents.
    Donation { user_id: Id, amount_cents: i64 },
}

impl EventKind {
    /// The wire name of the event type.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::StreamStart => "stream_start",
            EventKind::StreamStop => "stream_stop",
            EventKind::ViewerJoin { .. } => "viewer_join",
            EventKind::ViewerLeave { .. } => "viewer_leave",
            EventKind::ChatMessage { .. } => "chat_message",
            EventKind::Donation { .. } => "donation",
        }
    }
}

/// Why a message was not applied. The label is the `reason` of
/// `streamstats_events_rejected_total` and of the `dead_letters` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Payload larger than [`MAX_PAYLOAD_BYTES`].
    TooLarge,
    /// Payload is not UTF-8.
    InvalidUtf8,
    /// Payload is not a JSON object (syntax error, other JSON value, too deep).
    InvalidJson,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// `event_type` is not one of the six known types.
    UnknownEventType,
    /// `ts` is not RFC 3339 with an offset.
    InvalidTimestamp,
    /// `ts` is before 1970 or more than `MAX_FUTURE_SKEW` ahead of the
    /// message's log timestamp.
    TimestampOutOfRange,
    /// An id is empty, too long, or holds a NUL (which Postgres text cannot store).
    InvalidId,
    /// The message key is not the event's `stream_id` (SPEC §2).
    KeyMismatch,
    /// `message_len` is negative or absurd.
    InvalidMessageLen,
    /// `amount_usd` is negative, has more than two decimals, or is absurd.
    InvalidAmount,
    /// The event's window was already final for its stream (SPEC §3).
    Late,
}

impl RejectReason {
    /// Every reason, for metric initialisation and reports.
    pub const ALL: [RejectReason; 13] = [
        RejectReason::TooLarge,
        RejectReason::InvalidUtf8,
        RejectReason::InvalidJson,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::UnknownEventType,
        RejectReason::InvalidTimestamp,
        RejectReason::TimestampOutOfRange,
        RejectReason::InvalidId,
        RejectReason::InvalidMessageLen,
        RejectReason::InvalidAmount,
        RejectReason::KeyMismatch,
        RejectReason::Late,
    ];

    /// The stable snake_case label.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::UnknownEventType => "unknown_event_type",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::TimestampOutOfRange => "timestamp_out_of_range",
            RejectReason::InvalidId => "invalid_id",
            RejectReason::InvalidMessageLen => "invalid_message_len",
            RejectReason::InvalidAmount => "invalid_amount",
            RejectReason::KeyMismatch => "key_mismatch",
            RejectReason::Late => "late",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RejectReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RejectReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown reject reason {s:?}"))
    }
}

/// A rejected message: the reason label and a sentence for the dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    /// The label counted in metrics.
    pub reason: RejectReason,
    /// What exactly was wrong, for the `dead_letters.error` column.
    pub detail: String,
}

fn reject(reason: RejectReason, detail: impl Into<String>) -> Rejection {
    Rejection {
        reason,
        detail: detail.into(),
    }
}

/// The wire shape. The string fields are `S`: `&str` for the usual payload,
/// parsed in one pass with its strings borrowed (anything else, a field of
/// another type or an escape, fails it), or raw JSON (`&RawValue`), which
/// then decides, so that types are checked by us, with our reasons. The
/// numbers stay raw JSON, so the amount keeps its exact digits.
#[derive(Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>"))]
struct Wire<'a, S> {
    event_id: Option<S>,
    ts: Option<S>,
    event_type: Option<S>,
    stream_id: Option<S>,
    user_id: Option<S>,
    #[serde(borrow)]
    message_len: Option<&'a RawValue>,
    #[serde(borrow)]
    amount_usd: Option<&'a RawValue>,
    /// Legacy alias of `amount_usd`.
    #[serde(borrow)]
    amount: Option<&'a RawValue>,
}

/// A field that must hold a string, as either wire shape read it.
#[derive(Clone, Copy)]
enum Field<'a> {
    /// A JSON string without escapes: its text.
    Plain(&'a str),
    /// Any JSON value, checked by [`string_field`].
    Raw(&'a RawValue),
}

impl<'a> From<&'a str> for Field<'a> {
    fn from(text: &'a str) -> Self {
        Field::Plain(text)
    }
}

impl<'a> From<&'a RawValue> for Field<'a> {
    fn from(raw: &'a RawValue) -> Self {
        Field::Raw(raw)
    }
}

impl<'a> Field<'a> {
    /// The field's string value, or why it is not one.
    fn string(self, name: &str) -> Result<Cow<'a, str>, Rejection> {
        match self {
            Field::Plain(text) => Ok(Cow::Borrowed(text)),
            Field::Raw(raw) => string_field(name, raw),
        }
    }
}

/// The fields of either wire shape.
pub(crate) struct Fields<'a> {
    event_id: Option<Field<'a>>,
    ts: Option<Field<'a>>,
    event_type: Option<Field<'a>>,
    stream_id: Option<Field<'a>>,
    user_id: Option<Field<'a>>,
    /// Raw JSON text.
    message_len: Option<&'a str>,
    /// Raw JSON text of `amount_usd`, or else of the legacy `amount`.
    amount: Option<&'a str>,
}

impl<'a> Fields<'a> {
    /// Parses `text`, an object: in one pass when it has the usual shape
    /// (by [`event_scan`](crate::event_scan) when it is flat, else by
    /// `serde_json` with borrowed strings), else with raw string fields.
    pub(crate) fn parse(text: &'a str) -> Result<Fields<'a>, Rejection> {
        if let Some(scanned) = crate::event_scan::scan(text) {
            return Ok(Fields::from(scanned));
        }
        match serde_json::from_str::<Wire<'a, &'a str>>(text) {
            Ok(wire) => Ok(Fields::from(wire)),
            Err(_) => Fields::parse_raw(text),
        }
    }

    /// Parses `text` with every string field as raw JSON.
    pub(crate) fn parse_raw(text: &'a str) -> Result<Fields<'a>, Rejection> {
        serde_json::from_str::<Wire<'a, &'a RawValue>>(text)
            .map(Fields::from)
            .map_err(|e| reject(RejectReason::InvalidJson, e.to_string()))
    }
}

#[cfg(test)]
impl<'a> Fields<'a> {
    /// The one-pass parse by `serde_json` alone, without the scanner.
    pub(crate) fn parse_serde(text: &'a str) -> Option<Fields<'a>> {
        serde_json::from_str::<Wire<'a, &'a str>>(text)
            .ok()
            .map(Fields::from)
    }

    /// Each field's JSON text, for comparisons.
    pub(crate) fn texts(&self) -> [Option<&'a str>; 7] {
        let text = |f: Option<Field<'a>>| {
            f.map(|f| match f {
                Field::Plain(t) => t,
                Field::Raw(r) => r.get(),
            })
        };
        [
            text(self.event_id),
            text(self.ts),
            text(self.event_type),
            text(self.stream_id),
            text(self.user_id),
            self.message_len,
            self.amount,
        ]
    }
}

impl<'a, S: Into<Field<'a>>> From<Wire<'a, S>> for Fields<'a> {
    fn from(w: Wire<'a, S>) -> Self {
        Fields {
            event_id: w.event_id.map(Into::into),
            ts: w.ts.map(Into::into),
            event_type: w.event_type.map(Into::into),
            stream_id: w.stream_id.map(Into::into),
            user_id: w.user_id.map(Into::into),
            message_len: w.message_len.map(RawValue::get),
            amount: w.amount_usd.or(w.amount).map(RawValue::get),
        }
    }
}

impl<'a> From<Scanned<'a>> for Fields<'a> {
    fn from(s: Scanned<'a>) -> Self {
        Fields {
            event_id: s.event_id.map(Field::Plain),
            ts: s.ts.map(Field::Plain),
            event_type: s.event_type.map(Field::Plain),
            stream_id: s.stream_id.map(Field::Plain),
            user_id: s.user_id.map(Field::Plain),
            message_len: s.message_len,
            amount: s.amount_usd.or(s.amount),
        }
    }
}

impl Event {
    /// Parses one payload whose log timestamp is `log_time`, with the
    /// default future-skew bound ([`DEFAULT_MAX_FUTURE_SKEW`]).
    pub fn parse(payload: &[u8], log_time: DateTime<Utc>) -> Result<Event, Rejection> {
        Event::parse_bounded(payload, Some(log_time), DEFAULT_MAX_FUTURE_SKEW)
    }

    /// Parses one Kafka message: the payload by the contract, then the key,
    /// which must be the event's `stream_id`. `log_time` is the message's
    /// timestamp; an event time more than `max_future_skew` after it is
    /// rejected. Judged against the log, so a replay classifies every
    /// message the same way.
    pub fn from_message(
        key: Option<&[u8]>,
        payload: &[u8],
        log_time: Option<DateTime<Utc>>,
        max_future_skew: TimeDelta,
    ) -> Result<Event, Rejection> {
        let event = Event::parse_bounded(payload, log_time, max_future_skew)?;
        if key != Some(event.stream_id.as_bytes()) {
            let shown = key.map(String::from_utf8_lossy);
            return Err(reject(
                RejectReason::KeyMismatch,
                format!(
                    "message key {:?} is not the event's stream_id {:?}",
                    shown.as_deref().map(truncate),
                    truncate(&event.stream_id)
                ),
            ));
        }
        Ok(event)
    }

    /// Parses one payload. Without a `log_time` (a file has no log clock)
    /// only the lower bound of `ts` is checked.
    pub fn parse_bounded(
        payload: &[u8],
        log_time: Option<DateTime<Utc>>,
        max_future_skew: TimeDelta,
    ) -> Result<Event, Rejection> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(reject(
                RejectReason::TooLarge,
                format!(
                    "payload of {} bytes exceeds {MAX_PAYLOAD_BYTES}",
                    payload.len()
                ),
            ));
        }
        let text = std::str::from_utf8(payload)
            .map_err(|e| reject(RejectReason::InvalidUtf8, e.to_string()))?;
        if !text.trim_start().starts_with('{') {
            return Err(reject(
                RejectReason::InvalidJson,
                "payload is not a JSON object",
            ));
        }
        Event::from_fields(Fields::parse(text)?, log_time, max_future_skew)
    }

    /// Checks the fields of a parsed payload and builds the event.
    pub(crate) fn from_fields(
        wire: Fields<'_>,
        log_time: Option<DateTime<Utc>>,
        max_future_skew: TimeDelta,
    ) -> Result<Event, Rejection> {
        id_text(
            "event_id",
            required("event_id", wire.event_id)?,
            MAX_ID_CHARS,
        )?;
        let ts = timestamp(required("ts", wire.ts)?, log_time, max_future_skew)?;
        let event_type = required("event_type", wire.event_type)?.string("event_type")?;
        let stream_id = id_field(
            "stream_id",
            required("stream_id", wire.stream_id)?,
            MAX_STREAM_ID_CHARS,
        )?;
        let user = || id_field("user_id", required("user_id", wire.user_id)?, MAX_ID_CHARS);
        let kind = match event_type.as_ref() {
            "stream_start" => EventKind::StreamStart,
            "stream_stop" => EventKind::StreamStop,
            "viewer_join" => EventKind::ViewerJoin { user_id: user()? },
            "viewer_leave" => EventKind::ViewerLeave { user_id: user()? },
            "chat_message" => EventKind::ChatMessage {
                user_id: user()?,
                message_len: message_len(required("message_len", wire.message_len)?)?,
            },
            "donation" => EventKind::Donation {
                user_id: user()?,
                amount_cents: amount_cents(required("amount_usd", wire.amount)?)?,
            },
            other => {
                return Err(reject(
                    RejectReason::UnknownEventType,
                    format!("event_type {:?} is not a known type", truncate(other)),
                ))
            }
        };
        Ok(Event {
            ts,
            stream_id,
            kind,
        })
    }
}

fn required<T>(name: &str, field: Option<T>) -> Result<T, Rejection> {
    field.ok_or_else(|| reject(RejectReason::MissingField, format!("{name} is required")))
}

/// A string field's value: borrowed from the payload when the JSON string
/// has no escapes (the whole payload was already validated as JSON), decoded
/// otherwise.
fn string_field<'a>(name: &str, raw: &'a RawValue) -> Result<Cow<'a, str>, Rejection> {
    let text = raw.get();
    let plain = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|inner| !inner.contains('\\'));
    match plain {
        Some(inner) => Ok(Cow::Borrowed(inner)),
        None => serde_json::from_str::<String>(text)
            .map(Cow::Owned)
            .map_err(|_| reject(RejectReason::WrongType, format!("{name} must be a string"))),
    }
}

/// An id's value, once checked: 1 to `max_chars` characters, no NUL.
fn id_text<'a>(name: &str, field: Field<'a>, max_chars: usize) -> Result<Cow<'a, str>, Rejection> {
    // A string without escapes holds no NUL: JSON does not allow a raw
    // control character in a string, so only a decoded `\u0000` can.
    let may_hold_nul = matches!(field, Field::Raw(_));
    let value = field.string(name)?;
    // A string of at most `max_chars` bytes has at most that many
    // characters: count them only for longer ones.
    let chars = if value.len() <= max_chars {
        value.len()
    } else {
        value.chars().count()
    };
    if value.is_empty() || chars > max_chars {
        return Err(reject(
            RejectReason::InvalidId,
            format!("{name} must be 1 to {max_chars} characters, got {chars}"),
        ));
    }
    if may_hold_nul && value.contains('\0') {
        return Err(reject(
            RejectReason::InvalidId,
            format!("{name} contains a NUL character, which Postgres text cannot store"),
        ));
    }
    Ok(value)
}

/// An id kept by the event.
fn id_field(name: &str, field: Field<'_>, max_chars: usize) -> Result<Id, Rejection> {
    id_text(name, field, max_chars).map(|value| Id::from(value.as_ref()))
}

fn timestamp(
    field: Field<'_>,
    log_time: Option<DateTime<Utc>>,
    max_future_skew: TimeDelta,
) -> Result<DateTime<Utc>, Rejection> {
    let text = field.string("ts")?;
    let ts = DateTime::parse_from_rfc3339(&text)
        .map_err(|e| {
            reject(
                RejectReason::InvalidTimestamp,
                format!("ts {:?} is not RFC 3339: {e}", truncate(&text)),
            )
        })?
        .with_timezone(&Utc);
    if ts < DateTime::UNIX_EPOCH {
        return Err(reject(
            RejectReason::TimestampOutOfRange,
            format!("ts {:?} is before 1970", truncate(&text)),
        ));
    }
    if let Some(log_time) = log_time {
        if ts - log_time > max_future_skew {
            return Err(reject(
                RejectReason::TimestampOutOfRange,
                format!(
                    "ts {:?} is more than {}s ahead of its log time {} (the Kafka message timestamp, or when its line was read)",
                    truncate(&text),
                    max_future_skew.num_seconds(),
                    log_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                ),
            ));
        }
    }
    Ok(ts)
}

fn message_len(text: &str) -> Result<i64, Rejection> {
    if !is_json_number(text) || text.contains(['.', 'e', 'E']) {
        return Err(reject(
            RejectReason::WrongType,
            "message_len must be an integer",
        ));
    }
    match text.parse::<i64>() {
        Ok(n) if (0..=MAX_MESSAGE_LEN).contains(&n) => Ok(n),
        _ => Err(reject(
            RejectReason::InvalidMessageLen,
            format!(
                "message_len {} is not between 0 and {MAX_MESSAGE_LEN}",
                truncate(text)
            ),
        )),
    }
}

fn amount_cents(text: &str) -> Result<i64, Rejection> {
    if !is_json_number(text) {
        return Err(reject(
            RejectReason::WrongType,
            "amount_usd must be a number",
        ));
    }
    let bad = |why: &str| {
        reject(
            RejectReason::InvalidAmount,
            format!("amount_usd {} {why}", truncate(text)),
        )
    };
    let parsed = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text)
    } else {
        Decimal::from_str_exact(text)
    };
    let amount = parsed.map_err(|_| bad("is out of range"))?.normalize();
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(bad("is negative"));
    }
    if amount.scale() > 2 {
        return Err(bad("has more than two decimals"));
    }
    let cents = (amount * Decimal::ONE_HUNDRED)
        .to_i64()
        .filter(|c| *c <= MAX_AMOUNT_CENTS)
        .ok_or_else(|| bad("exceeds the largest accepted donation"))?;
    Ok(cents)
}

/// True when `text` is a JSON number token (RawValue keeps any JSON value).
fn is_json_number(text: &str) -> bool {
    text.starts_with(|c: char| c == '-' || c.is_ascii_digit())
}

/// Keeps dead-letter details short when a field holds a huge value.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("valid literal")
            .with_timezone(&Utc)
    }

    fn parse(json: &str) -> Result<Event, Rejection> {
        Event::parse(json.as_bytes(), now())
    }

    fn reason(json: &str) -> RejectReason {
        parse(json).expect_err("must be rejected").reason
    }

    fn donation(amount: &str) -> Result<Event, Rejection> {
        parse(&format!(
            r#"{{"event_id":"e","ts":"2025-12-20T18:34:38Z","event_type":"donation","stream_id":"s","user_id":"u","amount_usd":{amount}}}"#
        ))
    }

    #[test]
    fn parses_seed_timestamp_spelling_to_utc() {
        let ev = parse(r#"{"event_id":"e1","ts":"2025-12-20T18:34:38.300308+00:00","event_type":"stream_start","stream_id":"s1"}"#)
            .expect("valid");
        assert_eq!(ev.ts.to_rfc3339(), "2025-12-20T18:34:38.300308+00:00");
        assert_eq!(ev.kind, EventKind::StreamStart);
    }

    #[test]
    fn parses_z_form_and_normalises_offsets() {
        let z = parse(r#"{"event_id":"e","ts":"2025-12-20T18:34:38Z","event_type":"stream_stop","stream_id":"s"}"#)
            .expect("valid");
        let plus2 = parse(r#"{"event_id":"e","ts":"2025-12-20T20:34:38+02:00","event_type":"stream_stop","stream_id":"s"}"#)
            .expect("valid");
        assert_eq!(z.ts, plus2.ts);
        assert_eq!(z.ts.timestamp(), 1_766_255_678);
    }

    #[test]
    fn rejects_bad_timestamps() {
        for ts in [
            "2025-12-20 18:34:38",
            "2025-12-20T18:34:38",
            "yesterday",
            "2025-13-01T00:00:00Z",
        ] {
            let json = format!(
                r#"{{"event_id":"e","ts":"{ts}","event_type":"stream_start","stream_id":"s"}}"#
            );
            assert_eq!(reason(&json), RejectReason::InvalidTimestamp, "{ts}");
        }
        assert_eq!(
            reason(
                r#"{"event_id":"e","ts":1766255678,"event_type":"stream_start","stream_id":"s"}"#
            ),
            RejectReason::WrongType
        );
        for ts in [
            "1969-12-31T23:59:59Z",
            "2026-01-01T00:05:01Z",
            "9999-12-31T23:59:59Z",
        ] {
            let json = format!(
                r#"{{"event_id":"e","ts":"{ts}","event_type":"stream_start","stream_id":"s"}}"#
            );
            assert_eq!(reason(&json), RejectReason::TimestampOutOfRange, "{ts}");
        }
    }

    #[test]
    fn parses_every_event_type_with_its_fields() {
        let base = r#""event_id":"e","ts":"2025-12-20T18:34:38Z","stream_id":"s","user_id":"u""#;
        let cases = [
            (
                r#""event_type":"viewer_join""#,
                EventKind::ViewerJoin {
                    user_id: "u".into(),
                },
            ),
            (
                r#""event_type":"viewer_leave""#,
                EventKind::ViewerLeave {
                    user_id: "u".into(),
                },
            ),
            (
                r#""event_type":"chat_message","message_len":17"#,
                EventKind::ChatMessage {
                    user_id: "u".into(),
                    message_len: 17,
                },
            ),
            (
                r#""event_type":"donation","amount_usd":12.5"#,
                EventKind::Donation {
                    user_id: "u".into(),
                    amount_cents: 1250,
                },
            ),
            (
                r#""event_type":"donation","amount":3"#,
                EventKind::Donation {
                    user_id: "u".into(),
                    amount_cents: 300,
                },
            ),
        ];
        for (fields, kind) in cases {
            let ev = parse(&format!("{{{base},{fields}}}")).expect(fields);
            assert_eq!(ev.kind, kind);
            assert_eq!(ev.stream_id, "s");
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_ignored_fields_not_checked() {
        let ev = parse(r#"{"event_id":"e","ts":"2025-12-20T18:34:38Z","event_type":"stream_start","stream_id":"s","extra":{"a":[1,2]},"amount_usd":"junk","message_len":-1}"#)
            .expect("extra and ignored fields are fine");
        assert_eq!(ev.kind, EventKind::StreamStart);
    }

    #[test]
    fn amounts_are_exact_cents() {
        let cents = |a: &str| match donation(a).expect(a).kind {
            EventKind::Donation { amount_cents, .. } => amount_cents,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(cents("0.1"), 10);
        assert_eq!(cents("0.29"), 29);
        assert_eq!(cents("1.10"), 110);
        assert_eq!(cents("1.100"), 110);
        assert_eq!(cents("0"), 0);
        assert_eq!(cents("-0"), 0);
        assert_eq!(cents("1e2"), 10_000);
        assert_eq!(cents("1.5E1"), 1_500);
        assert_eq!(cents("999999999.99"), 99_999_999_999);
    }

    #[test]
    fn rejects_bad_amounts() {
        for a in [
            "-0.01",
            "1.001",
            "0.005",
            "1e-3",
            "1000000000.01",
            "1e300",
            "123456789012345678901234567890",
        ] {
            assert_eq!(
                donation(a).expect_err(a).reason,
                RejectReason::InvalidAmount,
                "{a}"
            );
        }
        for a in [r#""12.34""#, "true", "[1]", "{}"] {
            assert_eq!(
                donation(a).expect_err(a).reason,
                RejectReason::WrongType,
                "{a}"
            );
        }
        assert_eq!(
            donation("null").expect_err("null").reason,
            RejectReason::MissingField
        );
    }

    #[test]
    fn amount_usd_wins_over_legacy_alias() {
        let ev = parse(r#"{"event_id":"e","ts":"2025-12-20T18:34:38Z","event_type":"donation","stream_id":"s","user_id":"u","amount_usd":2,"amount":3}"#)
            .expect("valid");
        assert_eq!(
            ev.kind,
            EventKind::Donation {
                user_id: "u".into(),
                amount_cents: 200
            }
        );
    }

    #[test]
    fn rejects_missing_required_fields() {
        let full = [
            r#""event_id":"e""#,
            r#""ts":"2025-12-20T18:34:38Z""#,
            r#""event_type":"chat_message""#,
            r#""stream_id":"s""#,
            r#""user_id":"u""#,
            r#""message_len":3"#,
        ];
        assert!(parse(&format!("{{{}}}", full.join(","))).is_ok());
        for skip in 0..full.len() {
            let fields: Vec<_> = full
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, f)| *f)
                .collect();
            let json = format!("{{{}}}", fields.join(","));
            assert_eq!(reason(&json), RejectReason::MissingField, "{json}");
        }
        assert_eq!(
            reason(
                r#"{"event_id":null,"ts":"2025-12-20T18:34:38Z","event_type":"stream_start","stream_id":"s"}"#
            ),
            RejectReason::MissingField
        );
    }

    #[test]
    fn rejects_bad_ids_and_types() {
        let long = "x".repeat(129);
        let max = "é".repeat(128);
        let with_stream = |s: &str| {
            format!(
                r#"{{"event_id":"e","ts":"2025-12-20T18:34:38Z","event_type":"stream_start","stream_id":"{s}"}}"#
            )
        };
        assert_eq!(reason(&with_stream("")), RejectReason::InvalidId);
        assert_eq!(reason(&with_stream(&long)), RejectReason::InvalidId);
        assert!(
            parse(&with_stream(&max)).is_ok(),
            "128 characters are allowed whatever their bytes"
        );
        assert_eq!(
            reason(
                r#"{"event_id":"","ts":"2025-12-20T18:34:38Z","event_type":"stream_start","stream_id":"s"}"#
            ),
            RejectReason::InvalidId
        );
        assert_eq!(
            reason(
                r#"{"event_id":7,"ts":"2025-12-20T18:34:38Z","event_type":"stream_start","stream_id":"s"}"#
            ),
            RejectReason::WrongType
        );
        assert_eq!(
            reason(
                r#"{"event_id":"e","ts":"2025-12-20T18:34:38Z","event_type":"stream_start","stream_id":42}"#
            ),
            RejectReason::WrongType
        );
        assert_eq!(
            reason(
                r#"{"event_id":"e","ts":"2025-12-20T18:34:38Z","event_type":"raid","stream_id":"s"}"#
            ),
            RejectReason::UnknownEventType
        );
    }

    #[test]
    fn rejects_bad_message_len() {
        let chat = |len: &str| {
            format!(
                r#"{{"event_id":"e","ts":"2025-12-20T18:34:38Z","event_type":"chat_message","stream_id":"s","user_id":"u","message_len":{len}}}"#
            )
        };
        assert_eq!(reason(&chat("-1")), RejectReason::InvalidMessageLen);
        assert_eq!(
            reason(&chat("99999999999999999999")),
            RejectReason::InvalidMessageLen
        );
        assert_eq!(reason(&chat("3.5")), RejectReason::WrongType);
        assert_eq!(reason(&chat("3.0")), RejectReason::WrongType);
        assert_eq!(reason(&chat(r#""3""#)), RejectReason::WrongType);
        assert!(parse(&chat("0")).is_ok());
    }

    #[test]
    fn rejects_non_objects_and_bad_bytes() {
        assert_eq!(reason("not json"), RejectReason::InvalidJson);
        assert_eq!(reason(""), RejectReason::InvalidJson);
        assert_eq!(reason("[1,2,3]"), RejectReason::InvalidJson);
        assert_eq!(reason("42"), RejectReason::InvalidJson);
        assert_eq!(reason(r#"{"event_id":"e""#), RejectReason::InvalidJson);
        let nested = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let deep_small = format!("{}1{}", "[".repeat(20_000), "]".repeat(20_000));
        let deep_extra = format!(
            r#"{{"event_id":"e","ts":"2025-12-20T18:34:38Z","event_type":"stream_start","stream_id":"s","x":{deep_small}}}"#
        );
        assert!(
            parse(&deep_extra).is_ok(),
            "deep unknown fields are skipped without recursion"
        );
        let deep_id = format!(
            r#"{{"event_id":{nested},"ts":"2025-12-20T18:34:38Z","event_type":"stream_start","stream_id":"s"}}"#
        );
        assert_eq!(
            reason(&deep_id),
            RejectReason::TooLarge,
            "200 kB payloads are refused unread"
        );
        let deep_id = format!(
            r#"{{"event_id":{deep_small},"ts":"2025-12-20T18:34:38Z","event_type":"stream_start","stream_id":"s"}}"#
        );
        assert_eq!(reason(&deep_id), RejectReason::WrongType);
        assert_eq!(
            Event::parse(b"{\"event_id\":\"\xff\"}", now())
                .expect_err("bad utf8")
                .reason,
            RejectReason::InvalidUtf8
        );
        let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_PAYLOAD_BYTES));
        assert_eq!(reason(&huge), RejectReason::TooLarge);
    }

    #[test]
    fn future_skew_is_judged_against_the_log_time() {
        let at = |ts: &str| {
            format!(r#"{{"event_id":"e","ts":"{ts}","event_type":"stream_start","stream_id":"s"}}"#)
        };
        let skew = TimeDelta::minutes(5);
        let log = Some(now());
        let ok = at("2026-01-01T00:05:00Z");
        assert!(Event::parse_bounded(ok.as_bytes(), log, skew).is_ok());
        let ahead = at("2026-01-01T00:05:00.001Z");
        assert_eq!(
            Event::parse_bounded(ahead.as_bytes(), log, skew)
                .expect_err("ahead of the log")
                .reason,
            RejectReason::TimestampOutOfRange
        );
        // The same message a day later in the log is fine: only the log counts.
        let later = Some(now() + TimeDelta::days(1));
        assert!(Event::parse_bounded(ahead.as_bytes(), later, skew).is_ok());
        // Without a log clock (a file), only the 1970 bound applies.
        assert!(Event::parse_bounded(at("9999-01-01T00:00:00Z").as_bytes(), None, skew).is_ok());
    }

    #[test]
    fn ids_with_nul_are_rejected() {
        let stream = r#"{"event_id":"e","ts":"2025-12-20T18:34:38Z","event_type":"stream_start","stream_id":"a\u0000b"}"#;
        let rejection = parse(stream).expect_err("NUL in stream_id");
        assert_eq!(rejection.reason, RejectReason::InvalidId);
        assert!(
            !rejection.detail.contains('\0'),
            "the detail is storable text"
        );
        let user = r#"{"event_id":"e","ts":"2025-12-20T18:34:38Z","event_type":"viewer_join","stream_id":"s","user_id":"\u0000"}"#;
        assert_eq!(reason(user), RejectReason::InvalidId);
        let event = r#"{"event_id":"\u0000","ts":"2025-12-20T18:34:38Z","event_type":"stream_start","stream_id":"s"}"#;
        assert_eq!(reason(event), RejectReason::InvalidId);
    }

    #[test]
    fn the_key_must_be_the_stream_id() {
        let json = br#"{"event_id":"e","ts":"2025-12-20T18:34:38Z","event_type":"stream_start","stream_id":"s1"}"#;
        let skew = DEFAULT_MAX_FUTURE_SKEW;
        assert!(Event::from_message(Some(b"s1"), json, Some(now()), skew).is_ok());
        for key in [Some(b"s2".as_slice()), Some(b"".as_slice()), None] {
            assert_eq!(
                Event::from_message(key, json, Some(now()), skew)
                    .expect_err("wrong key")
                    .reason,
                RejectReason::KeyMismatch,
                "{key:?}"
            );
        }
        // A payload that breaks the contract keeps its own reason.
        assert_eq!(
            Event::from_message(Some(b"s2"), b"nope", Some(now()), skew)
                .expect_err("not JSON")
                .reason,
            RejectReason::InvalidJson
        );
    }

    #[test]
    fn reasons_round_trip_through_their_labels() {
        for r in RejectReason::ALL {
            assert_eq!(r.as_str().parse::<RejectReason>(), Ok(r));
        }
    }
}
