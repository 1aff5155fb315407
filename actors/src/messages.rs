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
    /// Where its raw payload is in the batch's [`EventBatch::payloads`].
    pub payload: Range<usize>,
    /// It came with a Kafka key (which, being valid, is its `stream_id`).
    pub keyed: bool,
}

/// One poll batch's events of one stream, in log order, with the raw
/// payloads of the whole batch in one buffer that every stream's message
/// shares: a late event's dead letter copies its bytes out, nothing else
/// copies or allocates per event.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct EventBatch {
    /// The stream's events.
    pub events: Vec<Envelope>,
    /// The payloads of the poll batch the events came in.
    pub payloads: Arc<Vec<u8>>,
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
