//! One stream's state: presence set, watermark, open windows, and what
//! changed in them since the last checkpoint.

use std::collections::BTreeMap;

use crate::hash::FastSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::minute::{minute_of, MinuteAgg, WindowRow, WINDOW};
use crate::event::{Event, EventKind, Id};

/// Most new chatters one stored chunk holds: a window that gains more
/// between two checkpoints is stored as several chunks, so no statement
/// grows with the size of a window.
pub const CHUNK_USERS: usize = 10_000;

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

/// How the presence set changed since the last checkpoint: the stored set
/// becomes `(stored − removed) ∪ added`, emptied first when `cleared`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewerDelta {
    /// A `stream_stop` emptied the set.
    pub cleared: bool,
    /// Users present now and not in the stored set.
    pub added: Vec<String>,
    /// Users in the stored set and absent now.
    pub removed: Vec<String>,
}

impl ViewerDelta {
    /// True when the stored set stays as it is.
    pub fn is_empty(&self) -> bool {
        !self.cleared && self.added.is_empty() && self.removed.is_empty()
    }
}

/// Everything a checkpoint writes for one stream: the rows to write (open
/// ones refreshed, newly final ones with `is_final = true`), and when the
/// stream's restorable state moved, its state row, watermark and the
/// increments of its presence set and of its open windows' chatters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Window rows to write.
    pub rows: Vec<WindowRow>,
    /// For each of `rows`, whether it is already stored (an update) or new
    /// (an insert).
    pub stored: Vec<bool>,
    /// The `stream_state` row, when an event was applied or the watermark moved.
    pub state: Option<StreamStateRow>,
    /// Whether the state row is already stored.
    pub state_stored: bool,
    /// The watermark, written with the state row.
    pub watermark: Option<DateTime<Utc>>,
    /// Windows held open, written with the state row.
    pub open_windows: usize,
    /// Presence-set increments.
    pub viewers: ViewerDelta,
    /// New distinct chatters of windows still open: (window start, chunk,
    /// user), a window's users together in chunks of at most
    /// [`CHUNK_USERS`], numbered per window.
    pub chatters: Vec<(DateTime<Utc>, i32, String)>,
    /// Windows that became final with chatters stored: those chunks go.
    /// (One with none stored needs no delete.)
    pub closed: Vec<DateTime<Utc>>,
}

impl Changes {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
            && self.state.is_none()
            && self.viewers.is_empty()
            && self.chatters.is_empty()
            && self.closed.is_empty()
    }
}

/// Everything one stream needs to continue, and the changes since the
/// last [`StreamWindows::take_changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamWindows {
    stream_id: String,
    viewers: FastSet<Id>,
    is_live: bool,
    last_event_at: Option<DateTime<Utc>>,
    /// Windows ending at or before this instant are final.
    watermark: Option<DateTime<Utc>>,
    /// Open windows, sorted by start: usually one or two, so a vector
    /// costs far less memory per stream than a tree.
    open: Vec<(DateTime<Utc>, MinuteAgg)>,
    /// Starts of open windows touched since the last take (may repeat).
    dirty: Vec<DateTime<Utc>>,
    /// Windows that became final since the last take.
    closed: Vec<ClosedWindow>,
    /// An event was applied or the watermark moved since the last take.
    state_due: bool,
    /// The state row is in `stream_state` (taken or restored).
    state_stored: bool,
    viewer_delta: ViewerSets,
    new_chatters: Vec<(DateTime<Utc>, Id)>,
}

/// A window that became final, until the next take.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClosedWindow {
    /// Its final row.
    row: WindowRow,
    /// The row is already in `stream_metrics_minute` (an update, not an insert).
    stored: bool,
    /// Chunks of its chatters are in `window_chatter_chunks`.
    chatters_stored: bool,
}

/// Presence-set increments as sets, so a join and a leave of the same user
/// between two checkpoints cancel out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ViewerSets {
    cleared: bool,
    added: FastSet<Id>,
    removed: FastSet<Id>,
}

impl StreamWindows {
    /// A stream seen for the first time.
    pub fn new(stream_id: impl Into<String>) -> Self {
        StreamWindows {
            stream_id: stream_id.into(),
            viewers: FastSet::default(),
            is_live: false,
            last_event_at: None,
            watermark: None,
            open: Vec::new(),
            dirty: Vec::new(),
            closed: Vec::new(),
            state_due: false,
            state_stored: false,
            viewer_delta: ViewerSets::default(),
            new_chatters: Vec::new(),
        }
    }

    /// A stream continued from what a checkpoint stored: its state row and
    /// watermark, its presence set and its open windows (non-final rows
    /// with their chatters). Nothing is pending.
    pub fn restore(
        state: &StreamStateRow,
        watermark: Option<DateTime<Utc>>,
        viewers: FastSet<Id>,
        open: BTreeMap<DateTime<Utc>, MinuteAgg>,
    ) -> Self {
        StreamWindows {
            is_live: state.is_live,
            last_event_at: state.last_event_at,
            watermark,
            viewers,
            open: open.into_iter().collect(),
            state_stored: true,
            ..StreamWindows::new(state.stream_id.clone())
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

    /// Size of the presence set.
    pub fn viewer_count(&self) -> usize {
        self.viewers.len()
    }

    /// True when the window starting at `window_start` is final.
    pub fn is_final(&self, window_start: DateTime<Utc>) -> bool {
        self.watermark.is_some_and(|wm| window_start <= wm - WINDOW)
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
                if !self.viewers.is_empty() || !self.viewer_delta.added.is_empty() {
                    self.viewers.clear();
                    self.viewer_delta = ViewerSets {
                        cleared: true,
                        ..ViewerSets::default()
                    };
                }
            }
            EventKind::ViewerJoin { user_id } => {
                self.is_live = true;
                if !self.viewers.contains(user_id) {
                    self.viewers.insert(user_id.clone());
                    if !self.viewer_delta.removed.remove(user_id) {
                        self.viewer_delta.added.insert(user_id.clone());
                    }
                }
            }
            EventKind::ViewerLeave { user_id } => {
                self.is_live = true;
                if self.viewers.remove(user_id) && !self.viewer_delta.added.remove(user_id) {
                    self.viewer_delta.removed.insert(user_id.clone());
                }
            }
            EventKind::ChatMessage { .. } | EventKind::Donation { .. } => self.is_live = true,
        }
        let viewers = self.viewers.len();
        let agg = self.window_mut(start);
        if let Some(chatter) = agg.apply(&event.kind, viewers) {
            self.new_chatters.push((start, Id::from(chatter)));
        }
        if self.dirty.last() != Some(&start) {
            self.dirty.push(start);
        }
        self.state_due = true;
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
        self.state_due = true;
        // Windows starting at or before this one end at or before `to`.
        let last_closing = to - WINDOW;
        if self
            .open
            .first()
            .is_none_or(|(start, _)| *start > last_closing)
        {
            return;
        }
        let closing = self
            .open
            .partition_point(|(start, _)| *start <= last_closing);
        for (start, agg) in self.open.drain(..closing) {
            self.closed.push(ClosedWindow {
                row: agg.to_row(&self.stream_id, start, true),
                stored: agg.stored,
                chatters_stored: agg.chunks > 0,
            });
        }
    }

    /// Closes every open window, as the end of a bounded input does: the
    /// watermark moves to the end of the last open window, no further, so
    /// later input for later windows is not late.
    pub fn close_all(&mut self) {
        if let Some((start, _)) = self.open.last() {
            let end = *start + WINDOW;
            self.advance_watermark(end);
        }
    }

    /// The open window starting at `start`, created if needed.
    fn window_mut(&mut self, start: DateTime<Utc>) -> &mut MinuteAgg {
        let i = match self.open.binary_search_by_key(&start, |(s, _)| *s) {
            Ok(i) => i,
            Err(i) => {
                // Usually one or two windows are open: grow by one, not to
                // the default four (about 400 B a stream with 100k streams).
                self.open.reserve_exact(1);
                self.open.insert(i, (start, MinuteAgg::default()));
                i
            }
        };
        &mut self.open[i].1
    }

    /// The open window starting at `start`, if any.
    fn window_mut_if_open(&mut self, start: DateTime<Utc>) -> Option<&mut MinuteAgg> {
        self.open
            .binary_search_by_key(&start, |(s, _)| *s)
            .ok()
            .map(|i| &mut self.open[i].1)
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

    /// Everything changed since the previous call: closed windows (final),
    /// touched open windows (not final), and when the restorable state
    /// moved, the state row with the increments a restore needs.
    pub fn take_changes(&mut self) -> Changes {
        let taken = std::mem::take(&mut self.closed);
        let closed: Vec<DateTime<Utc>> = taken
            .iter()
            .filter(|c| c.chatters_stored)
            .map(|c| c.row.window_start)
            .collect();
        let (mut rows, mut stored): (Vec<WindowRow>, Vec<bool>) =
            taken.into_iter().map(|c| (c.row, c.stored)).unzip();
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for start in dirty {
            if let Ok(i) = self.open.binary_search_by_key(&start, |(s, _)| *s) {
                let agg = &mut self.open[i].1;
                rows.push(agg.to_row(&self.stream_id, start, false));
                stored.push(std::mem::replace(&mut agg.stored, true));
            }
        }
        let mut new_chatters = std::mem::take(&mut self.new_chatters);
        // A chunk per window (more when it gained over `CHUNK_USERS`
        // chatters): its users together, in window order.
        new_chatters.sort_by_key(|(start, _)| *start);
        let mut chatters = Vec::with_capacity(new_chatters.len());
        // The window, chunk number and users of the chunk being filled.
        let mut chunk: Option<(DateTime<Utc>, i32, usize)> = None;
        for (start, user) in new_chatters {
            let number = match &mut chunk {
                Some((s, n, users)) if *s == start && *users < CHUNK_USERS => {
                    *users += 1;
                    *n
                }
                _ => {
                    let Some(agg) = self.window_mut_if_open(start) else {
                        continue;
                    };
                    let n = agg.chunks;
                    agg.chunks += 1;
                    chunk = Some((start, n, 1));
                    n
                }
            };
            chatters.push((start, number, String::from(user)));
        }
        let delta = std::mem::take(&mut self.viewer_delta);
        let viewers = ViewerDelta {
            cleared: delta.cleared,
            added: delta.added.into_iter().map(String::from).collect(),
            removed: delta.removed.into_iter().map(String::from).collect(),
        };
        let state = std::mem::take(&mut self.state_due).then(|| self.state_row());
        let state_stored = self.state_stored;
        if state.is_some() {
            self.state_stored = true;
        }
        Changes {
            rows,
            stored,
            state,
            state_stored,
            watermark: self.watermark,
            open_windows: self.open.len(),
            viewers,
            chatters,
            closed,
        }
    }
}
