//! The JSON shapes of the API: times in RFC 3339 UTC, money as an exact
//! decimal number (`12.34`, never a binary float).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use streamstats_actors::store::queries::{MinuteRecord, StateRecord, StreamTotals};

/// RFC 3339 in UTC with a `Z`.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Cents as an exact JSON number with two decimals.
pub fn usd(cents: i64) -> Box<RawValue> {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    RawValue::from_string(format!("{sign}{}.{:02}", abs / 100, abs % 100))
        .expect("a decimal literal is valid JSON")
}

/// One minute row.
#[derive(Serialize)]
pub struct MinuteJson {
    window_start: String,
    window_end: String,
    stream_id: String,
    active_viewers: i64,
    chat_messages: i64,
    donations_usd: Box<RawValue>,
    events: i64,
    chat_chars: i64,
    donations: i64,
    viewer_joins: i64,
    viewer_leaves: i64,
    unique_chatters: i64,
    is_final: bool,
    updated_at: String,
}

impl From<MinuteRecord> for MinuteJson {
    fn from(r: MinuteRecord) -> Self {
        MinuteJson {
            window_start: time(r.window_start),
            window_end: time(r.window_end),
            stream_id: r.stream_id,
            active_viewers: r.active_viewers,
            chat_messages: r.chat_messages,
            donations_usd: usd(r.donations_cents),
            events: r.events,
            chat_chars: r.chat_chars,
            donations: r.donations,
            viewer_joins: r.viewer_joins,
            viewer_leaves: r.viewer_leaves,
            unique_chatters: r.unique_chatters,
            is_final: r.is_final,
            updated_at: time(r.updated_at),
        }
    }
}

/// One `stream_state` row.
#[derive(Serialize)]
pub struct StateJson {
    stream_id: String,
    is_live: bool,
    active_viewers: i64,
    last_event_at: Option<String>,
    updated_at: String,
}

impl From<StateRecord> for StateJson {
    fn from(r: StateRecord) -> Self {
        StateJson {
            stream_id: r.stream_id,
            is_live: r.is_live,
            active_viewers: r.active_viewers,
            last_event_at: r.last_event_at.map(time),
            updated_at: time(r.updated_at),
        }
    }
}

/// One ranked stream.
#[derive(Serialize)]
pub struct TotalsJson {
    stream_id: String,
    active_viewers: i64,
    chat_messages: i64,
    donations_usd: Box<RawValue>,
}

impl From<StreamTotals> for TotalsJson {
    fn from(t: StreamTotals) -> Self {
        TotalsJson {
            stream_id: t.stream_id,
            active_viewers: t.active_viewers,
            chat_messages: t.chat_messages,
            donations_usd: usd(t.donations_cents),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact_text() {
        assert_eq!(usd(0).get(), "0.00");
        assert_eq!(usd(5).get(), "0.05");
        assert_eq!(usd(1234).get(), "12.34");
        assert_eq!(usd(9_007_199_254_740_993).get(), "90071992547409.93");
    }

    #[test]
    fn times_are_utc_with_z() {
        let t = DateTime::parse_from_rfc3339("2025-12-20T20:34:00+02:00")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(time(t), "2025-12-20T18:34:00Z");
    }
}
