//! The poll loop: one batch from the input (librdkafka or the files),
//! parsed, dead-lettered or grouped per stream and handed to the window
//! actors; assignment changes observed during a Kafka poll are applied in
//! log order.

use std::ops::Range;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::Message as _;

use super::batch::Batch;
use super::file_source::{FileInput, ParsedBatch};
use super::incarnation::{Incarnation, Input};
use super::{
    AssignmentEvent, ConsumerActor, ConsumerError, Env, Lifecycle, PipelineContext, Poll,
    IDLE_POLL, MAX_BATCH, RESTORE_RETRY, WINDOW_BACKLOG,
};
use crate::checkpoint::{checkpoint_due, DeadLetter};
use crate::event::{Event, Rejection};
use crate::messages::WindowFailed;
use crate::supervise::ActorKind;

/// Longest wait for the file reader's next batch in one poll.
const FILE_WAIT: Duration = Duration::from_millis(20);
/// Re-check of a read paused by `max_uncommitted_events` when no commit
/// resumes it first.
const PAUSED_POLL: Duration = Duration::from_millis(50);
/// Re-check of a read waiting for the window actors.
const BACKLOG_POLL: Duration = Duration::from_millis(1);

/// Where a record's raw payload is.
enum Payload<'a> {
    /// In the client's buffer (a Kafka message): copied into the batch.
    Borrowed(&'a [u8]),
    /// Already in the batch's payload buffer (a file's line).
    InBatch(Range<usize>),
}

impl<'a> Payload<'a> {
    /// The payload's bytes.
    fn bytes<'s>(&'s self, batch: &'s Batch) -> &'s [u8] {
        match self {
            Payload::Borrowed(bytes) => bytes,
            Payload::InBatch(range) => batch.data.payload(range),
        }
    }
}

/// One message or line, with what its dead letter would need.
struct Record<'a> {
    partition: i32,
    offset: i64,
    /// The Kafka key; `None` for a file line (the key check does not apply).
    key: Option<Option<&'a [u8]>>,
    payload: Payload<'a>,
    /// The Kafka message timestamp (for a line, when it was read),
    /// bounding the event time.
    log_time: Option<DateTime<Utc>>,
}

impl Incarnation {
    /// Polls one batch. `Ok(true)` when the batch was full (poll again now).
    pub(super) fn poll_batch(
        &mut self,
        env: &Env,
        on_failure: &Recipient<WindowFailed>,
    ) -> Result<bool, ConsumerError> {
        let mut batch = Batch::reusing(self.batches.reclaim().unwrap_or_default());
        let full = match &self.input {
            Input::Kafka(client) => {
                let client = client.clone();
                self.poll_kafka(&client, env, on_failure, &mut batch)?
            }
            Input::Files(_) => self.read_files(env, &mut batch)?,
        };
        let (groups, data) = batch.take_groups();
        self.dispatch(env, on_failure, groups, &data)?;
        self.batches.lend(data);
        env.metrics.events_consumed.inc_by(batch.consumed);
        for (reason, n) in batch.rejected {
            env.metrics
                .events_rejected
                .with_label_values(&[reason.as_str()])
                .inc_by(n);
        }
        self.pending.events_since_barrier += batch.consumed;
        self.pending.uncommitted += batch.consumed;
        env.metrics
            .uncommitted_events
            .set(i64::try_from(self.pending.uncommitted).unwrap_or(i64::MAX));
        Ok(full)
    }

    /// Takes up to `MAX_BATCH` messages from librdkafka.
    fn poll_kafka(
        &mut self,
        client: &BaseConsumer<PipelineContext>,
        env: &Env,
        on_failure: &Recipient<WindowFailed>,
        batch: &mut Batch,
    ) -> Result<bool, ConsumerError> {
        for _ in 0..MAX_BATCH {
            let polled = client.poll(Duration::ZERO);
            for event in client.context().take_events() {
                match event {
                    AssignmentEvent::Failed(error) => return Err(error.into()),
                    AssignmentEvent::Revoked => {
                        batch.discard();
                        self.revoke_all(env);
                    }
                    AssignmentEvent::Assigned {
                        epoch,
                        partitions,
                        restored,
                    } => {
                        let (groups, data) = batch.take_groups();
                        self.dispatch(env, on_failure, groups, &data)?;
                        self.batches.lend(data);
                        self.restore(env, on_failure, epoch, &partitions, restored)?;
                    }
                }
            }
            let msg = match polled {
                None => return Ok(false),
                Some(Ok(msg)) => msg,
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    if let Some(pos) = self.partitions.get_mut(&p) {
                        pos.at_eof = true;
                    }
                    continue;
                }
                Some(Err(e)) => {
                    log::warn!("Kafka consumer error: {e}.");
                    return Ok(false);
                }
            };
            let log_time = msg
                .timestamp()
                .to_millis()
                .and_then(DateTime::<Utc>::from_timestamp_millis);
            let record = Record {
                partition: msg.partition(),
                offset: msg.offset(),
                key: Some(msg.key()),
                payload: Payload::Borrowed(msg.payload().unwrap_or_default()),
                log_time,
            };
            self.take_parsed(env, batch, record, None);
        }
        Ok(true)
    }

    /// Takes the next batch the file reader parsed; at the end of the last
    /// file the partition is marked at its end.
    fn read_files(&mut self, env: &Env, batch: &mut Batch) -> Result<bool, ConsumerError> {
        let Input::Files(FileInput::Reading(reader)) = &self.input else {
            return Ok(false);
        };
        let Some(read) = reader.next(FILE_WAIT)? else {
            return Ok(false);
        };
        let ParsedBatch {
            mut lines,
            read_at,
            ended,
            lines_left,
        } = read?;
        self.lines_left = Some(lines_left);
        // The lines as read become the batch's payload buffer, and the
        // reader gets the buffer of an earlier batch back instead.
        let spare = std::mem::take(&mut batch.data.payloads);
        batch.data.payloads = std::mem::replace(&mut lines.buf, spare);
        batch.data.events.reserve(lines.lines.len());
        for ((range, position), parsed) in lines.lines.iter().zip(lines.parsed.drain(..)) {
            let record = Record {
                partition: 0,
                offset: position.offset(),
                key: None,
                payload: Payload::InBatch(range.clone()),
                log_time: Some(read_at),
            };
            self.take_parsed(env, batch, record, Some(parsed));
        }
        if let Some(pos) = self.partitions.get_mut(&0) {
            pos.at_eof = ended;
        }
        if let Input::Files(FileInput::Reading(reader)) = &self.input {
            reader.recycle(lines);
        }
        Ok(!ended)
    }

    /// Counts one record and adds it to the batch or the dead letters,
    /// parsing it unless `parsed` already holds the outcome.
    fn take_parsed(
        &mut self,
        env: &Env,
        batch: &mut Batch,
        record: Record<'_>,
        parsed: Option<Result<Event, Rejection>>,
    ) {
        let Some(pos) = self.partitions.get_mut(&record.partition) else {
            // Prefetched before a revoke: not ours to count.
            return;
        };
        if pos.next_offset.is_some_and(|next| record.offset < next) {
            // Prefetched before a seek: already counted.
            return;
        }
        env.faults.tick(ActorKind::Consumer, 1);
        batch.consumed += 1;
        pos.next_offset = Some(record.offset + 1);
        pos.at_eof = false;
        let skew = env.cfg.max_future_skew;
        let parsed = parsed.unwrap_or_else(|| {
            let payload = record.payload.bytes(batch);
            match record.key {
                Some(key) => Event::from_message(key, payload, record.log_time, skew),
                None => Event::parse_bounded(payload, record.log_time, skew),
            }
        });
        match parsed {
            Ok(event) => {
                let payload = match record.payload {
                    Payload::Borrowed(bytes) => batch.copy_payload(bytes),
                    Payload::InBatch(range) => range,
                };
                let keyed = matches!(record.key, Some(Some(_)));
                batch.push(event, record.partition, record.offset, keyed, payload);
            }
            Err(rejection) => {
                let payload = record.payload.bytes(batch).to_vec();
                *batch.rejected.entry(rejection.reason).or_default() += 1;
                self.pending.dead_letters.push(DeadLetter {
                    partition: record.partition,
                    offset: record.offset,
                    reason: rejection.reason,
                    error: rejection.detail,
                    payload,
                    key: record.key.flatten().map(<[u8]>::to_vec),
                });
            }
        }
    }
}

impl ConsumerActor {
    pub(super) fn schedule_poll(&mut self, full: bool, ctx: &mut Context<Self>) {
        let cfg = &self.env.cfg;
        let bound = cfg.max_uncommitted_events;
        let Lifecycle::Running(inc) = &mut self.lifecycle else {
            return;
        };
        if inc.phase.shutting_down() {
            return;
        }
        if inc.end_of_input() {
            log::info!("Read every line of the input; writing the final checkpoint.");
            let step = inc.phase.shutdown();
            return self.advance(step, ctx);
        }
        let since = inc.pending.events_since_barrier;
        let step = if checkpoint_due(since, cfg.checkpoint_events, inc.lines_left) {
            inc.phase.due()
        } else {
            crate::checkpoint::Step::Wait
        };
        // The barrier may release a held batch: decide after it.
        self.advance(step, ctx);
        let Lifecycle::Running(inc) = &mut self.lifecycle else {
            return;
        };
        let held = !inc.held.is_empty();
        let paused = held || inc.pending.uncommitted >= bound;
        self.env.metrics.consumer_paused.set(i64::from(paused));
        if paused {
            // A commit polls at once (see `resume_paused`); the timer
            // re-checks in case no commit comes, e.g. while Postgres is down.
            let delay = if held { RESTORE_RETRY } else { PAUSED_POLL };
            let handle = ctx.notify_later(Poll, delay);
            inc.paused_poll = Some(handle);
        } else if inc.batches.backlog() >= WINDOW_BACKLOG {
            ctx.notify_later(Poll, BACKLOG_POLL);
        } else if full {
            // Read on at once, but through the runtime: a `notify` alone
            // would run the next poll inside the same wake-up of this
            // actor's task, which then never yields, and the checkpoint
            // answers it awaits stall (tokio's cooperative budget of the
            // task runs out) until reading stops.
            let next = tokio::task::yield_now()
                .into_actor(self)
                .map(|(), _, ctx| ctx.notify(Poll));
            ctx.spawn(next);
        } else {
            ctx.notify_later(Poll, IDLE_POLL);
        }
    }

    /// Reads on at once after a commit brought a paused read back under
    /// `max_uncommitted_events`, instead of waiting out the re-check timer.
    pub(super) fn resume_paused(&mut self, ctx: &mut Context<Self>) {
        let Lifecycle::Running(inc) = &mut self.lifecycle else {
            return;
        };
        if inc.pending.uncommitted >= self.env.cfg.max_uncommitted_events {
            return;
        }
        if let Some(handle) = inc.paused_poll.take() {
            ctx.cancel_future(handle);
            ctx.notify(Poll);
        }
    }
}
