//! The messages between the pipeline's actors.

use std::ops::Range;
use std::sync::Arc;

use actix::Message;
use chrono::{DateTime, Utc};

use crate::checkpoint::{BarrierError, Checkpoint, DeadLetter};
use crate::event::Event;
use crate::window::Changes;

/// A valid event with the provenance a dead letter would need.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The parsed event.
    pub event: Event,
    /// Partition (0 for a file source).
    pub partition: i32,
    /// Offset (a file source's line position).
    pub offset: i64,
    /// Where its raw payload is in its batch's [`PollBatch::payloads`].
    pub payload: Range<usize>,
    /// It came with a Kafka key (which, being valid, is its `stream_id`).
    pub keyed: bool,
}

/// One poll batch's valid events in log order and the raw payloads they
/// came in, shared by every stream's [`EventBatch`]: grouping the batch
/// by stream moves no event and copies no payload.
#[derive(Debug, Default)]
pub struct PollBatch {
    /// The batch's valid events, in log order.
    pub events: Vec<Envelope>,
    /// The raw payloads, back to back (for a file, the lines as read).
    pub payloads: Vec<u8>,
}

impl PollBatch {
    /// The raw payload at `range` of [`PollBatch::payloads`].
    pub fn payload(&self, range: &Range<usize>) -> &[u8] {
        self.payloads.get(range.clone()).unwrap_or_default()
    }
}

/// One stream's events of a poll batch: a late event's dead letter copies
/// its bytes out, nothing else copies or allocates per event.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct EventBatch {
    /// The poll batch.
    pub batch: Arc<PollBatch>,
    /// Where the stream's events are in `batch.events`, in log order.
    pub indices: Vec<u32>,
}

impl EventBatch {
    /// The stream's events, in log order.
    pub fn events(&self) -> impl Iterator<Item = &Envelope> {
        self.indices
            .iter()
            .filter_map(|&i| self.batch.events.get(i as usize))
    }
}

/// Checkpoint barrier: answer on `reply` with everything changed since the
/// last one, after first moving the watermark to `idle_watermark` if given.
/// Sent with `do_send` in the step that copies the offsets (see
/// `crate::checkpoint`), so it is in the mailbox before any later batch.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Barrier {
    /// Wall-clock watermark for an idle stream of a caught-up partition.
    pub idle_watermark: Option<DateTime<Utc>>,
    /// The input has ended: close every open window.
    pub end_of_input: bool,
    /// The copied next offset of the stream's partition: every event the
    /// actor applied must lie before it.
    pub next_offset: Option<i64>,
    /// Where the answer goes: one channel for every barrier of a checkpoint.
    pub reply: tokio::sync::mpsc::UnboundedSender<BarrierAnswer>,
}

/// One window actor's answer to a barrier, with its stream.
pub type BarrierAnswer = (String, Result<BarrierReply, BarrierError>);

/// A window actor's part of a checkpoint.
#[derive(Debug, Default)]
pub struct BarrierReply {
    /// The stream's partition.
    pub partition: i32,
    /// Rows, state and restore increments since the previous barrier.
    pub changes: Changes,
    /// Late events since the previous barrier.
    pub late: Vec<DeadLetter>,
    /// Windows the stream holds open.
    pub open_windows: usize,
    /// The stream's watermark.
    pub watermark: Option<DateTime<Utc>>,
    /// Windows that became final since the previous barrier.
    pub finalized: u64,
}

/// A window actor failed; the pipeline must roll back.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WindowFailed {
    /// The stream whose actor failed.
    pub stream_id: String,
    /// The consumer epoch the actor belonged to.
    pub epoch: u64,
    /// The panic message.
    pub reason: String,
}

/// Commit one checkpoint transaction.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), crate::writer::WriteError>")]
pub struct WriteCheckpoint(pub std::sync::Arc<Checkpoint>);

/// Stop consuming, write a final checkpoint, then answer.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;
