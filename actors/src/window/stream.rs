//! One stream's state: presence set, watermark, open windows.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::minute::{minute_of, MinuteAgg, WindowRow, WINDOW};
use crate::event::{Event, EventKind};

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Counted in its window.
    Applied,
    /// Its window was already final: not applied (SPEC §3 "late").
    Late,
}

/// One row of `stream_state` (without the writer's `updated_at`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamStateRow {
    /// The stream.
    pub stream_id: String,
    /// False after `stream_stop`, true after any other applied event.
    pub is_live: bool,
    /// Current size of the presence set.
    pub active_viewers: i64,
    /// Latest event time applied for the stream.
    pub last_event_at: Option<DateTime<Utc>>,
}

/// What changed since the last [`StreamWindows::take_changes`]: the rows to
/// upsert (open ones refreshed, newly final ones with `is_final = true`) and
/// the stream's state row when it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Window rows to upsert.
    pub rows: Vec<WindowRow>,
    /// The `stream_state` row, when any event was applied or a window closed.
    pub state: Option<StreamStateRow>,
}

impl Changes {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.state.is_none()
    }
}

/// Everything one stream needs to continue. Serialised into the checkpoint;
/// the change tracking is not (a checkpoint writes every change it tracked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamWindows {
    stream_id: String,
    viewers: BTreeSet<String>,
    is_live: bool,
    last_event_at: Option<DateTime<Utc>>,
    /// Windows ending at or before this instant are final.
    watermark: Option<DateTime<Utc>>,
    /// Open windows by start.
    open: BTreeMap<DateTime<Utc>, MinuteAgg>,
    #[serde(skip)]
    dirty: BTreeSet<DateTime<Utc>>,
    #[serde(skip)]
    closed: Vec<WindowRow>,
    #[serde(skip)]
    state_changed: bool,
    /// Something a restore needs moved since the last snapshot: an event
    /// was applied or the watermark advanced (idle finalization included).
    #[serde(skip)]
    snapshot_due: bool,
}

impl StreamWindows {
    /// A stream seen for the first time.
    pub fn new(stream_id: impl Into<String>) -> Self {
        StreamWindows {
            stream_id: stream_id.into(),
            viewers: BTreeSet::new(),
            is_live: false,
            last_event_at: None,
            watermark: None,
            open: BTreeMap::new(),
            dirty: BTreeSet::new(),
            closed: Vec::new(),
            state_changed: false,
            snapshot_due: false,
        }
    }

    /// The stream's id.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// The current watermark, if any event was applied.
    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        self.watermark
    }

    /// Latest applied event time.
    pub fn last_event_at(&self) -> Option<DateTime<Utc>> {
        self.last_event_at
    }

    /// Number of windows held in memory.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// True when the window starting at `window_start` is final.
    pub fn is_final(&self, window_start: DateTime<Utc>) -> bool {
        self.watermark.is_some_and(|wm| window_start + WINDOW <= wm)
    }

    /// Applies one event of this stream, in log order.
    pub fn apply(&mut self, event: &Event, allowed_lateness: TimeDelta) -> Applied {
        let start = minute_of(event.ts);
        if self.is_final(start) {
            return Applied::Late;
        }
        match &event.kind {
            EventKind::StreamStart => self.is_live = true,
            EventKind::StreamStop => {
                self.is_live = false;
                self.viewers.clear();
            }
            EventKind::ViewerJoin { user_id } => {
                self.is_live = true;
                if !self.viewers.contains(user_id) {
                    self.viewers.insert(user_id.clone());
                }
            }
            EventKind::ViewerLeave { user_id } => {
                self.is_live = true;
                self.viewers.remove(user_id);
            }
            EventKind::ChatMessage { .. } | EventKind::Donation { .. } => self.is_live = true,
        }
        self.open
            .entry(start)
            .or_default()
            .apply(&event.kind, self.viewers.len());
        self.dirty.insert(start);
        self.state_changed = true;
        self.snapshot_due = true;
        if self.last_event_at.is_none_or(|t| event.ts > t) {
            self.last_event_at = Some(event.ts);
            self.advance_watermark(event.ts - allowed_lateness);
        }
        Applied::Applied
    }

    /// Moves the watermark forward to `to` (never back) and closes every
    /// window that ends at or before it. Used by event time and by idle
    /// finalization, where the watermark follows the wall clock.
    pub fn advance_watermark(&mut self, to: DateTime<Utc>) {
        if self.watermark.is_some_and(|wm| wm >= to) {
            return;
        }
        self.watermark = Some(to);
        self.snapshot_due = true;
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() + WINDOW > to {
                break;
            }
            let (start, agg) = entry.remove_entry();
            self.dirty.remove(&start);
            self.closed.push(agg.to_row(&self.stream_id, start, true));
            self.state_changed = true;
        }
    }

    /// The current `stream_state` row.
    pub fn state_row(&self) -> StreamStateRow {
        StreamStateRow {
            stream_id: self.stream_id.clone(),
            is_live: self.is_live,
            active_viewers: i64::try_from(self.viewers.len()).unwrap_or(i64::MAX),
            last_event_at: self.last_event_at,
        }
    }

    /// True once per change a restore needs (applied events, a moved
    /// watermark): the caller writes a snapshot and the flag resets.
    pub fn take_snapshot_due(&mut self) -> bool {
        std::mem::take(&mut self.snapshot_due)
    }

    /// Everything changed since the previous call: closed windows (final),
    /// touched open windows (not final), and the state row if it changed.
    pub fn take_changes(&mut self) -> Changes {
        let mut rows = std::mem::take(&mut self.closed);
        for start in std::mem::take(&mut self.dirty) {
            if let Some(agg) = self.open.get(&start) {
                rows.push(agg.to_row(&self.stream_id, start, false));
            }
        }
        let state = std::mem::take(&mut self.state_changed).then(|| self.state_row());
        Changes { rows, state }
    }
}
