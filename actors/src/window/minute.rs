//! One stream's one-minute window: the partial aggregate while it is open
//! and the row it becomes in `stream_metrics_minute`.

use crate::hash::FastSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{EventKind, Id};

/// Length of a tumbling window.
pub const WINDOW: TimeDelta = TimeDelta::minutes(1);

/// Start of the minute `ts` falls in (`[m, m+60s)`, UTC).
pub fn minute_of(ts: DateTime<Utc>) -> DateTime<Utc> {
    let secs = ts.timestamp().div_euclid(60) * 60;
    DateTime::from_timestamp(secs, 0).expect("a minute start of a valid time is valid")
}

/// The running aggregate of one open window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinuteAgg {
    /// Events applied to the window.
    pub events: i64,
    /// `viewer_join` events.
    pub viewer_joins: i64,
    /// `viewer_leave` events.
    pub viewer_leaves: i64,
    /// `chat_message` events.
    pub chat_messages: i64,
    /// Sum of `message_len` over chat messages.
    pub chat_chars: i64,
    /// `donation` events.
    pub donations: i64,
    /// Sum of donations, in cents.
    pub donation_cents: i64,
    /// Size of the stream's viewer set right after the last event applied here.
    pub active_viewers: i64,
    /// Distinct users who chatted in the window.
    pub chatters: FastSet<Id>,
    /// Chunks of chatters stored for the window: the next checkpoint's new
    /// chatters are stored as chunk number `chunks`.
    pub chunks: i32,
    /// The window's row is in `stream_metrics_minute` (a checkpoint took
    /// it, or it was restored from there): its next write is an update.
    pub stored: bool,
}

impl MinuteAgg {
    /// Counts one event; `viewers_after` is the viewer-set size once it is
    /// applied. Returns the user when the event adds a distinct chatter.
    pub fn apply<'a>(&mut self, kind: &'a EventKind, viewers_after: usize) -> Option<&'a str> {
        self.events += 1;
        let mut new_chatter = None;
        match kind {
            EventKind::StreamStart | EventKind::StreamStop => {}
            EventKind::ViewerJoin { .. } => self.viewer_joins += 1,
            EventKind::ViewerLeave { .. } => self.viewer_leaves += 1,
            EventKind::ChatMessage {
                user_id,
                message_len,
            } => {
                self.chat_messages += 1;
                self.chat_chars += message_len;
                if !self.chatters.contains(user_id) {
                    self.chatters.insert(user_id.clone());
                    new_chatter = Some(user_id.as_str());
                }
            }
            EventKind::Donation { amount_cents, .. } => {
                self.donations += 1;
                self.donation_cents += amount_cents;
            }
        }
        self.active_viewers = i64::try_from(viewers_after).unwrap_or(i64::MAX);
        new_chatter
    }

    /// The aggregate an open window's stored row and chatters describe.
    pub fn from_row(row: &WindowRow, chatters: FastSet<Id>, chunks: i32) -> Self {
        MinuteAgg {
            events: row.events,
            viewer_joins: row.viewer_joins,
            viewer_leaves: row.viewer_leaves,
            chat_messages: row.chat_messages,
            chat_chars: row.chat_chars,
            donations: row.donations,
            donation_cents: row.donation_cents,
            active_viewers: row.active_viewers,
            chatters,
            chunks,
            stored: true,
        }
    }

    /// The row this aggregate is written as.
    pub fn to_row(
        &self,
        stream_id: &str,
        window_start: DateTime<Utc>,
        is_final: bool,
    ) -> WindowRow {
        WindowRow {
            window_start,
            stream_id: stream_id.to_owned(),
            active_viewers: self.active_viewers,
            events: self.events,
            viewer_joins: self.viewer_joins,
            viewer_leaves: self.viewer_leaves,
            chat_messages: self.chat_messages,
            chat_chars: self.chat_chars,
            unique_chatters: i64::try_from(self.chatters.len()).unwrap_or(i64::MAX),
            donations: self.donations,
            donation_cents: self.donation_cents,
            is_final,
        }
    }
}

/// One row of `stream_metrics_minute` (without the writer's `updated_at`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WindowRow {
    /// Start of the minute, UTC.
    pub window_start: DateTime<Utc>,
    /// The stream.
    pub stream_id: String,
    /// Viewer-set size after the window's last applied event.
    pub active_viewers: i64,
    /// Events applied.
    pub events: i64,
    /// `viewer_join` events.
    pub viewer_joins: i64,
    /// `viewer_leave` events.
    pub viewer_leaves: i64,
    /// `chat_message` events.
    pub chat_messages: i64,
    /// Sum of `message_len`.
    pub chat_chars: i64,
    /// Distinct chatting users.
    pub unique_chatters: i64,
    /// `donation` events.
    pub donations: i64,
    /// Sum of donations in cents (`donations_usd` = cents / 100).
    pub donation_cents: i64,
    /// The window's end is at or before its stream's watermark.
    pub is_final: bool,
}

impl WindowRow {
    /// End of the window (`window_start + 60s`).
    pub fn window_end(&self) -> DateTime<Utc> {
        self.window_start + WINDOW
    }
}
