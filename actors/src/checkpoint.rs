//! The checkpoint: what one Postgres transaction commits (SPEC §4), and the
//! barrier protocol that makes its parts describe one instant.
//!
//! Barrier protocol. The consumer actor is the only sender of event batches
//! to the window actors, and an actix mailbox is FIFO per sender. To
//! checkpoint, the consumer (1) copies its next offset per partition and
//! takes its dead letters, (2) sends a `Barrier` to every window actor that
//! received events (or must be idle-finalized) since the last barrier. Each
//! window actor answers after applying every batch sent before the barrier
//! and none after it, so its changes and snapshot match the copied offsets
//! exactly. (3) The writer commits rows, states, snapshots, dead letters and
//! offsets in one transaction; (4) only then are the offsets committed to
//! Kafka, for lag tools. At most one checkpoint is in flight; a failed
//! commit is retried as is (it is still a consistent cut), and any actor
//! failure rolls the whole pipeline back to the last committed checkpoint.
//!
//! Fencing within the process: every checkpoint carries the consumer's
//! assignment epoch; a rebalance or restart bumps the epoch before state is
//! reloaded, and the writer refuses a checkpoint of an older epoch, under
//! the same lock the reload takes.

use std::collections::BTreeMap;

use crate::event::RejectReason;
use crate::window::{StreamStateRow, WindowRow};

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

/// One stream's serialised window model.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The stream.
    pub stream_id: String,
    /// The partition the stream's events come from.
    pub partition: i32,
    /// [`crate::window::StreamWindows`] as JSON.
    pub state: serde_json::Value,
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
    /// Next offset to read, per partition.
    pub offsets: BTreeMap<i32, i64>,
    /// Window rows to upsert.
    pub rows: Vec<WindowRow>,
    /// `stream_state` rows to upsert.
    pub states: Vec<StreamStateRow>,
    /// Window-model snapshots to upsert.
    pub snapshots: Vec<Snapshot>,
    /// Dead letters to insert.
    pub dead_letters: Vec<DeadLetter>,
    /// Events covered since the previous checkpoint (for metrics).
    pub events: u64,
}

/// What a partition assignment restores from Postgres.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// Stored next offset per partition (absent: never checkpointed).
    pub offsets: BTreeMap<i32, i64>,
    /// Snapshots of the streams of the assigned partitions.
    pub snapshots: Vec<Snapshot>,
}

/// In-process fencing between checkpoints and state reloads (see the module
/// header): the writer commits and a reload reads under `lock`, and a
/// checkpoint whose epoch is not the current one is refused.
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

    /// Starts a new epoch; checkpoints of older ones are refused from now on.
    pub fn bump(&self) -> u64 {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
    }
}
