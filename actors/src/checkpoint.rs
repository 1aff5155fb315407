//! The checkpoint: what one Postgres transaction commits (SPEC §4), and the
//! barrier protocol that makes its parts describe one instant.
//!
//! Barrier protocol. The consumer actor is the only sender of event batches
//! to the window actors, and an actix mailbox is FIFO. To checkpoint, the
//! consumer, in one synchronous step of its handler, (1) copies its next
//! offset per partition and takes its dead letters, and (2) enqueues a
//! `Barrier` (with `do_send`, which never defers) in the mailbox of every
//! window actor that received events (or must be idle-finalized) since the
//! last barrier. No batch can be dispatched between (1) and (2), so each
//! window actor answers after applying every batch sent before the barrier
//! and none after it: its changes match the copied offsets exactly. The
//! barrier carries its partition's copied next offset and the window actor
//! refuses to answer if it applied an offset at or past it
//! ([`BarrierError::Overtaken`]), so a broken ordering cannot commit.
//! (3) The writer commits rows, stream states with the restore increments,
//! dead letters and offsets in one transaction; (4) only then are the
//! offsets committed to Kafka, for lag tools. At most one checkpoint is in
//! flight ([`Phase`]); a failed commit is retried as is (it is still a
//! consistent cut), and any actor failure rolls the whole pipeline back to
//! the last committed checkpoint.
//!
//! Fencing within the process: every checkpoint carries the consumer's
//! assignment epoch; a rebalance, claim or restart bumps the epoch (under
//! the lock the writer commits under) before state is reloaded, and the
//! writer refuses a checkpoint of an older epoch.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::event::RejectReason;
use crate::lines::LinePosition;
use crate::window::{Changes, StreamStateRow, StreamWindows, WindowRow};

/// A rejected message with its provenance, bound for `dead_letters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Partition of the message.
    pub partition: i32,
    /// Offset of the message.
    pub offset: i64,
    /// Why it was rejected.
    pub reason: RejectReason,
    /// The detailed error sentence.
    pub error: String,
    /// The raw payload, byte for byte.
    pub payload: Vec<u8>,
    /// The raw key, if any.
    pub key: Option<Vec<u8>>,
}

/// One stream's state row and what a restore needs besides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// The public `stream_state` row.
    pub state: StreamStateRow,
    /// The partition the stream's events come from.
    pub partition: i32,
    /// The stream's watermark.
    pub watermark: Option<DateTime<Utc>>,
    /// Windows it holds open (restored on assignment when non-zero).
    pub open_windows: usize,
    /// The newest window among this checkpoint's rows of the stream; the
    /// stored one stays when it is newer or this is `None`.
    pub latest_window: Option<DateTime<Utc>>,
    /// The state row is already stored (an update) or new (an insert).
    pub stored: bool,
}

/// Two columns of text, for set-based (`unnest`) writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamUsers {
    /// Stream ids.
    pub streams: Vec<String>,
    /// User ids, one per stream id.
    pub users: Vec<String>,
}

/// The presence-set and chatter increments of one checkpoint, as columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Increments {
    /// Streams whose stored presence set is emptied first.
    pub viewers_cleared: Vec<String>,
    /// Viewers to remove from the stored sets.
    pub viewers_removed: StreamUsers,
    /// Viewers to add to the stored sets.
    pub viewers_added: StreamUsers,
    /// New distinct chatters of open windows (with `chatter_windows` and
    /// `chatter_chunks`); the entries of one chunk are adjacent.
    pub chatters_added: StreamUsers,
    /// Window start of each entry of `chatters_added`.
    pub chatter_windows: Vec<DateTime<Utc>>,
    /// Chunk number of each entry of `chatters_added` (per window).
    pub chatter_chunks: Vec<i32>,
    /// Streams of windows that became final (with `closed_windows`).
    pub closed_streams: Vec<String>,
    /// Starts of the windows that became final: their chatters go.
    pub closed_windows: Vec<DateTime<Utc>>,
}

impl Increments {
    /// The ranges of `chatters_added` that form one chunk each (one row of
    /// `window_chatter_chunks`), in order.
    pub fn chatter_chunk_ranges(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        let key = |i: usize| {
            (
                &self.chatters_added.streams[i],
                self.chatter_windows[i],
                self.chatter_chunks[i],
            )
        };
        let n = self
            .chatters_added
            .streams
            .len()
            .min(self.chatter_windows.len())
            .min(self.chatter_chunks.len());
        let mut start = 0;
        std::iter::from_fn(move || {
            if start >= n {
                return None;
            }
            let mut end = start + 1;
            while end < n && key(end) == key(start) {
                end += 1;
            }
            let range = start..end;
            start = end;
            Some(range)
        })
    }
}

/// Everything one checkpoint transaction writes.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    /// Assignment epoch of the consumer that took the barrier.
    pub epoch: u64,
    /// The consumer incarnation that owns the partitions (cross-process fencing).
    pub owner: String,
    /// Consumer group of the offsets.
    pub group_id: String,
    /// Topic of the offsets and dead letters.
    pub topic: String,
    /// Every partition the checkpoint's owner holds (its claim is refreshed).
    pub partitions: Vec<i32>,
    /// Next offset to read, per partition.
    pub offsets: BTreeMap<i32, i64>,
    /// Window rows to write.
    pub rows: Vec<WindowRow>,
    /// For each of `rows`: already stored (an update) or new (an insert).
    pub rows_stored: Vec<bool>,
    /// `stream_state` rows (with the restore columns) to write.
    pub streams: Vec<StreamRecord>,
    /// Presence-set and chatter increments.
    pub increments: Increments,
    /// Dead letters to insert.
    pub dead_letters: Vec<DeadLetter>,
    /// Events covered since the previous checkpoint (for metrics).
    pub events: u64,
    /// A file source's files, in order; empty for Kafka. Their dead
    /// letters are stored under the file's path and line.
    pub files: Arc<[String]>,
}

impl Checkpoint {
    /// Where a dead letter came from, as stored: topic, partition and
    /// offset, or for a file source the file's path, 0 and the line.
    pub fn dead_letter_origin(&self, letter: &DeadLetter) -> (&str, i32, i64) {
        let line = LinePosition::from_offset(letter.offset)
            .filter(|_| !self.files.is_empty())
            .and_then(|p| Some((self.files.get(p.file)?, i64::try_from(p.line).ok()?)));
        match line {
            Some((path, line)) => (path, 0, line),
            None => (&self.topic, letter.partition, letter.offset),
        }
    }

    /// Rows the transaction writes or deletes, for the size metric.
    pub fn row_count(&self) -> usize {
        let inc = &self.increments;
        self.rows.len()
            + self.streams.len()
            + inc.viewers_cleared.len()
            + inc.viewers_removed.streams.len()
            + inc.viewers_added.streams.len()
            + inc.chatter_chunk_ranges().count()
            + inc.closed_streams.len()
            + self.dead_letters.len()
            + self.offsets.len()
    }

    /// Adds one stream's changes (its partition given) to the checkpoint.
    pub fn add(&mut self, partition: i32, changes: Changes) {
        let stream_id = match &changes.state {
            Some(state) => state.stream_id.clone(),
            None => match changes.rows.first() {
                Some(row) => row.stream_id.clone(),
                None => return,
            },
        };
        let latest_window = changes.rows.iter().map(|r| r.window_start).max();
        self.rows.extend(changes.rows);
        self.rows_stored.extend(changes.stored);
        if let Some(state) = changes.state {
            self.streams.push(StreamRecord {
                state,
                partition,
                watermark: changes.watermark,
                open_windows: changes.open_windows,
                latest_window,
                stored: changes.state_stored,
            });
        }
        let inc = &mut self.increments;
        let viewers = changes.viewers;
        if viewers.cleared {
            inc.viewers_cleared.push(stream_id.clone());
        }
        for user in viewers.removed {
            inc.viewers_removed.streams.push(stream_id.clone());
            inc.viewers_removed.users.push(user);
        }
        for user in viewers.added {
            inc.viewers_added.streams.push(stream_id.clone());
            inc.viewers_added.users.push(user);
        }
        for (start, chunk, user) in changes.chatters {
            inc.chatters_added.streams.push(stream_id.clone());
            inc.chatters_added.users.push(user);
            inc.chatter_windows.push(start);
            inc.chatter_chunks.push(chunk);
        }
        for start in changes.closed {
            inc.closed_streams.push(stream_id.clone());
            inc.closed_windows.push(start);
        }
    }
}

/// What a partition assignment restores from Postgres.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// Stored next offset per partition (absent: never checkpointed).
    pub offsets: BTreeMap<i32, i64>,
    /// The streams of the assigned partitions that hold open windows, with
    /// their partitions; the others are restored on their next event.
    pub streams: Vec<(i32, StreamWindows)>,
}

/// Why a window actor could not answer a barrier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BarrierError {
    /// The actor failed earlier; its state is not trusted.
    #[error("the window actor of stream {stream_id} failed earlier")]
    Failed {
        /// The stream.
        stream_id: String,
    },
    /// The actor panicked while answering.
    #[error("the window actor of stream {stream_id} panicked at the barrier: {reason}")]
    Panicked {
        /// The stream.
        stream_id: String,
        /// The panic message.
        reason: String,
    },
    /// The actor applied an event at or past the barrier's copied offset:
    /// its changes would cover events the stored offsets do not.
    #[error("stream {stream_id} applied offset {applied} of partition {partition} before a barrier at next offset {next_offset}")]
    Overtaken {
        /// The stream.
        stream_id: String,
        /// The stream's partition.
        partition: i32,
        /// The highest offset the actor applied.
        applied: i64,
        /// The next offset the barrier copied.
        next_offset: i64,
    },
    /// The actor stopped before answering.
    #[error("the window actor of stream {stream_id} is gone")]
    Gone {
        /// The stream.
        stream_id: String,
    },
}

/// Where one incarnation's checkpoint cycle is. At most one checkpoint is
/// in flight; one that falls due meanwhile starts as soon as it commits
/// (so a database slower than the interval is kept busy, not left idle
/// until the next tick); a shutdown waits for it, then writes a final one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// No checkpoint in flight.
    #[default]
    Idle,
    /// A checkpoint is being collected or written.
    InFlight,
    /// One is in flight and the next fell due meanwhile.
    InFlightThenDue,
    /// One is in flight and shutdown was requested: the final one follows.
    InFlightThenShutdown,
    /// The final checkpoint is in flight; shutdown completes when it ends.
    Final,
}

/// Events per checkpoint near the end of a bounded input, as a fraction
/// of the usual count.
const END_CHECKPOINT_DIVISOR: u64 = 16;

/// Whether a checkpoint falls due `since` events after the last barrier,
/// with one due every `every` events. A bounded input (a file source)
/// knows about how many lines it has left: near its end (fewer than
/// `every`), checkpoints follow each other (one falls due after a
/// sixteenth of `every` and starts when the one in flight commits). So the
/// last one, written after the last line while the reader is done, holds
/// only what was read while the one before it committed, not up to
/// `every` events.
pub fn checkpoint_due(since: u64, every: u64, lines_left: Option<u64>) -> bool {
    match lines_left {
        Some(left) if left < every => since >= (every / END_CHECKPOINT_DIVISOR).max(1),
        _ => since >= every,
    }
}

/// What the consumer does after a [`Phase`] transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing now.
    Wait,
    /// Take a barrier and write a checkpoint (`final_one`: the last one).
    Start {
        /// The shutdown's final checkpoint.
        final_one: bool,
    },
    /// The final checkpoint is done: leave the group and answer the shutdown.
    Finish,
}

impl Phase {
    /// A periodic (or load-triggered) checkpoint is due.
    pub fn due(&mut self) -> Step {
        match self {
            Phase::Idle => {
                *self = Phase::InFlight;
                Step::Start { final_one: false }
            }
            Phase::InFlight => {
                *self = Phase::InFlightThenDue;
                Step::Wait
            }
            _ => Step::Wait,
        }
    }

    /// Shutdown was requested.
    pub fn shutdown(&mut self) -> Step {
        match self {
            Phase::Idle => {
                *self = Phase::Final;
                Step::Start { final_one: true }
            }
            Phase::InFlight | Phase::InFlightThenDue => {
                *self = Phase::InFlightThenShutdown;
                Step::Wait
            }
            Phase::InFlightThenShutdown | Phase::Final => Step::Wait,
        }
    }

    /// The checkpoint in flight ended: `committed`, or abandoned because
    /// its epoch is over (nothing of it was written).
    pub fn ended(&mut self, committed: bool) -> Step {
        match self {
            Phase::InFlightThenDue if committed => {
                *self = Phase::InFlight;
                Step::Start { final_one: false }
            }
            Phase::Idle | Phase::InFlight | Phase::InFlightThenDue => {
                *self = Phase::Idle;
                Step::Wait
            }
            Phase::InFlightThenShutdown => {
                *self = Phase::Final;
                Step::Start { final_one: true }
            }
            Phase::Final if committed => Step::Finish,
            Phase::Final => Step::Start { final_one: true },
        }
    }

    /// True once shutdown was requested: consumption stops.
    pub fn shutting_down(self) -> bool {
        matches!(self, Phase::InFlightThenShutdown | Phase::Final)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// In-process fencing between checkpoints and state reloads (see the module
/// header): the writer commits under `lock`, and a reload starts a new
/// epoch under it, so a checkpoint of an older epoch is refused from then
/// on. The lock is held only for the commit and the epoch bump, never
/// across a reload or a retry.
#[derive(Debug, Default)]
pub struct Fence {
    lock: std::sync::Mutex<()>,
    epoch: std::sync::atomic::AtomicU64,
}

impl Fence {
    /// Holds the fence; commits and reloads never overlap.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A poisoned lock only means a panic happened while it was held;
        // the guarded data is `()`, so continuing is safe.
        self.lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Starts a new epoch; checkpoints of older ones are refused from now
    /// on. Taken under the lock, so it waits for a commit in progress: what
    /// is read after it includes that commit, and no older one follows.
    pub fn bump(&self) -> u64 {
        let _held = self.lock();
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_follow_each_other_near_the_end_of_a_bounded_input() {
        let every = 160_000;
        // Kafka, or a file far from its end: every `every` events.
        for left in [None, Some(u64::MAX), Some(every)] {
            assert!(!checkpoint_due(every - 1, every, left), "{left:?}");
            assert!(checkpoint_due(every, every, left), "{left:?}");
        }
        // Fewer lines left than one checkpoint's worth: a sixteenth.
        assert!(!checkpoint_due(9_999, every, Some(every - 1)));
        assert!(checkpoint_due(10_000, every, Some(every - 1)));
        assert!(checkpoint_due(1, 1, Some(0)));
        assert!(!checkpoint_due(0, 1, Some(0)));
    }

    #[test]
    fn one_checkpoint_in_flight_and_shutdown_waits_for_it() {
        let mut phase = Phase::default();
        assert_eq!(phase.due(), Step::Start { final_one: false });
        assert_eq!(phase.due(), Step::Wait, "one in flight at most");
        assert_eq!(phase.shutdown(), Step::Wait);
        assert!(phase.shutting_down());
        assert_eq!(phase.due(), Step::Wait);
        assert_eq!(phase.ended(true), Step::Start { final_one: true });
        assert_eq!(phase, Phase::Final);
        assert_eq!(phase.ended(true), Step::Finish);
    }

    #[test]
    fn a_checkpoint_due_while_one_is_in_flight_starts_when_it_commits() {
        let mut phase = Phase::default();
        assert_eq!(phase.due(), Step::Start { final_one: false });
        assert_eq!(phase.due(), Step::Wait);
        assert_eq!(phase.due(), Step::Wait, "owed once, however many ticks");
        assert_eq!(phase.ended(true), Step::Start { final_one: false });
        assert_eq!(phase, Phase::InFlight);
        assert_eq!(phase.ended(true), Step::Wait, "nothing owed");
        assert_eq!(phase, Phase::Idle);
        // An abandoned one (its epoch is over) owes nothing.
        assert_eq!(phase.due(), Step::Start { final_one: false });
        assert_eq!(phase.due(), Step::Wait);
        assert_eq!(phase.ended(false), Step::Wait);
        assert_eq!(phase, Phase::Idle);
        // Shutdown replaces what is owed with the final checkpoint.
        assert_eq!(phase.due(), Step::Start { final_one: false });
        assert_eq!(phase.due(), Step::Wait);
        assert_eq!(phase.shutdown(), Step::Wait);
        assert_eq!(phase.ended(true), Step::Start { final_one: true });
    }

    #[test]
    fn an_abandoned_final_checkpoint_is_taken_again() {
        let mut phase = Phase::default();
        assert_eq!(phase.shutdown(), Step::Start { final_one: true });
        assert_eq!(phase.ended(false), Step::Start { final_one: true });
        assert_eq!(phase.ended(true), Step::Finish);
    }

    #[test]
    fn a_periodic_checkpoint_returns_to_idle() {
        let mut phase = Phase::default();
        assert_eq!(phase.due(), Step::Start { final_one: false });
        assert_eq!(phase.ended(false), Step::Wait);
        assert_eq!(phase, Phase::Idle);
        assert_eq!(phase.due(), Step::Start { final_one: false });
        assert_eq!(phase.ended(true), Step::Wait);
        assert!(!phase.shutting_down());
    }
}
