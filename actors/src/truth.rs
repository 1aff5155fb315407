//! Ground truth: the tables a correct pipeline must end with, computed by
//! feeding messages, in log order, through the same parser and window model
//! the pipeline runs.
//!
//! The generator feeds every message it sends; a test can feed the messages
//! it consumes back from the broker. After [`Truth::finish`] every window is
//! final, as idle finalization leaves them once the topic is drained.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{Event, RejectReason, DEFAULT_MAX_FUTURE_SKEW};
use crate::window::{Applied, StreamStateRow, StreamWindows, WindowRow};

/// The expected final content of the result tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expected {
    /// Messages observed (valid, late and malformed, duplicates included).
    pub messages: u64,
    /// Events applied to a window.
    pub applied: u64,
    /// Rows of `dead_letters`, by reason label.
    pub dead_letters: BTreeMap<String, u64>,
    /// `stream_metrics_minute`, ordered by `(window_start, stream_id)`.
    pub rows: Vec<WindowRow>,
    /// `stream_state`, ordered by `stream_id`.
    pub stream_state: Vec<StreamStateRow>,
}

impl Expected {
    /// True when `other` holds the same tables (rows, stream states, dead
    /// letters by reason); the message counts are not tables.
    pub fn same_tables(&self, other: &Expected) -> bool {
        self.rows == other.rows
            && self.stream_state == other.stream_state
            && self.dead_letters == other.dead_letters
    }

    /// Total dead letters over every reason.
    pub fn dead_letter_total(&self) -> u64 {
        self.dead_letters.values().sum()
    }
}

/// What observing one message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Applied to its stream's window.
    Applied(Event),
    /// Rejected, with the reason it is dead-lettered under.
    Rejected(RejectReason),
}

/// Accumulates ground truth over messages in log order.
#[derive(Debug, Clone)]
pub struct Truth {
    allowed_lateness: TimeDelta,
    now: DateTime<Utc>,
    streams: BTreeMap<String, StreamWindows>,
    rows: BTreeMap<(DateTime<Utc>, String), WindowRow>,
    dead_letters: BTreeMap<RejectReason, u64>,
    messages: u64,
    applied: u64,
}

impl Truth {
    /// `now` is the log time assumed by [`Truth::observe`], which has none.
    pub fn new(allowed_lateness: TimeDelta, now: DateTime<Utc>) -> Self {
        Truth {
            allowed_lateness,
            now,
            streams: BTreeMap::new(),
            rows: BTreeMap::new(),
            dead_letters: BTreeMap::new(),
            messages: 0,
            applied: 0,
        }
    }

    /// The watermark of `stream_id`, if it has applied events.
    pub fn watermark(&self, stream_id: &str) -> Option<DateTime<Utc>> {
        self.streams.get(stream_id).and_then(|s| s.watermark())
    }

    /// Observes one payload, in its partition's log order, as a message
    /// keyed by its own `stream_id` and stamped `now` by the log.
    pub fn observe(&mut self, payload: &[u8]) -> Observed {
        self.messages += 1;
        let parsed = Event::parse(payload, self.now);
        self.apply(parsed)
    }

    /// Observes one Kafka message (key, payload, log timestamp), in its
    /// partition's log order, with every check the consumer makes.
    pub fn observe_message(
        &mut self,
        key: Option<&[u8]>,
        payload: &[u8],
        log_time: Option<DateTime<Utc>>,
    ) -> Observed {
        self.messages += 1;
        let parsed = Event::from_message(key, payload, log_time, DEFAULT_MAX_FUTURE_SKEW);
        self.apply(parsed)
    }

    /// Observes one line of a JSON-lines file, as a file source reads it:
    /// no key, and `now` (the replay's clock) as the log time.
    pub fn observe_line(&mut self, text: &[u8]) -> Observed {
        self.messages += 1;
        let parsed = Event::parse_bounded(text, Some(self.now), DEFAULT_MAX_FUTURE_SKEW);
        self.apply(parsed)
    }

    /// Observes every event line of a JSON-lines buffer, in order.
    pub fn observe_lines(&mut self, buf: &[u8]) {
        for (_, text) in crate::lines::event_lines(buf) {
            self.observe_line(text);
        }
    }

    fn apply(&mut self, parsed: Result<Event, crate::event::Rejection>) -> Observed {
        let event = match parsed {
            Ok(event) => event,
            Err(rejection) => return self.reject(rejection.reason),
        };
        let stream = self
            .streams
            .entry(event.stream_id.to_string())
            .or_insert_with(|| StreamWindows::new(event.stream_id.clone()));
        match stream.apply(&event, self.allowed_lateness) {
            Applied::Late => self.reject(RejectReason::Late),
            Applied::Applied => {
                self.applied += 1;
                Observed::Applied(event)
            }
        }
    }

    fn reject(&mut self, reason: RejectReason) -> Observed {
        *self.dead_letters.entry(reason).or_default() += 1;
        Observed::Rejected(reason)
    }

    /// Finalizes every window and returns the expected tables.
    pub fn finish(mut self) -> Expected {
        let mut stream_state = Vec::with_capacity(self.streams.len());
        for stream in self.streams.values_mut() {
            stream.advance_watermark(DateTime::<Utc>::MAX_UTC);
            for row in stream.take_changes().rows {
                self.rows
                    .insert((row.window_start, row.stream_id.clone()), row);
            }
            stream_state.push(stream.state_row());
        }
        Expected {
            messages: self.messages,
            applied: self.applied,
            dead_letters: self
                .dead_letters
                .into_iter()
                .map(|(r, n)| (r.as_str().to_owned(), n))
                .collect(),
            rows: self.rows.into_values().collect(),
            stream_state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_finalizes_every_window_and_counts_rejections() {
        let now = Utc::now();
        let mut truth = Truth::new(TimeDelta::minutes(10), now);
        let msgs = [
            r#"{"event_id":"1","ts":"2025-01-01T00:00:10Z","event_type":"viewer_join","stream_id":"a","user_id":"u"}"#,
            r#"{"event_id":"2","ts":"2025-01-01T00:30:00Z","event_type":"chat_message","stream_id":"a","user_id":"u","message_len":2}"#,
            r#"{"event_id":"3","ts":"2025-01-01T00:00:20Z","event_type":"viewer_leave","stream_id":"a","user_id":"u"}"#,
            r#"{"event_id":"4","ts":"2025-01-01T00:00:20Z","event_type":"viewer_leave","stream_id":"b","user_id":"u"}"#,
            "garbage",
        ];
        for m in msgs {
            truth.observe(m.as_bytes());
        }
        let expected = truth.finish();
        assert_eq!(expected.messages, 5);
        assert_eq!(expected.applied, 3);
        assert_eq!(expected.dead_letters.get("late"), Some(&1));
        assert_eq!(expected.dead_letters.get("invalid_json"), Some(&1));
        assert_eq!(expected.rows.len(), 3);
        assert!(expected.rows.iter().all(|r| r.is_final));
        assert_eq!(expected.stream_state.len(), 2);
        assert_eq!(
            expected.stream_state[0].active_viewers, 1,
            "the late leave was not applied"
        );
    }
}
