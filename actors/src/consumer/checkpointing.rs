//! The checkpoint cycle of the consumer: barrier, collection of the window
//! actors' changes, the writer's transaction, and what follows a commit or
//! a failure (see `crate::checkpoint` for the protocol and the phases).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::incarnation::{Incarnation, Input};
use super::{ConsumerActor, ConsumerError, Lifecycle, PipelineContext, RESTORE_RETRY};
use crate::checkpoint::{BarrierError, Checkpoint};
use crate::event::RejectReason;
use crate::messages::{Barrier, BarrierAnswer, BarrierReply, WriteCheckpoint};
use crate::metrics::{CheckpointOutcome, Metrics};
use crate::supervise::{catch, ActorKind};
use crate::window::minute_of;
use crate::writer::WriteError;

/// Least time between two offset commits to Kafka.
const KAFKA_COMMIT_EVERY: Duration = Duration::from_secs(5);
/// Refusals of the same checkpoint by a database that is up, after which
/// the pipeline halts instead of retrying.
const MAX_REFUSALS: u32 = 3;

impl ConsumerActor {
    /// Takes a barrier: in this one synchronous step, copies the offsets and
    /// dead letters and enqueues a `Barrier` in every window actor that has
    /// something to report, then collects the answers and writes.
    pub(super) fn begin_checkpoint(&mut self, final_one: bool, ctx: &mut Context<Self>) {
        let cfg = &self.env.cfg;
        let Lifecycle::Running(inc) = &mut self.lifecycle else {
            if final_one {
                self.finish_shutdown();
            }
            return;
        };
        if inc.partitions.is_empty() || inc.epoch == 0 {
            // Nothing assigned: nothing to write.
            let step = inc.phase.ended(true);
            return self.advance(step, ctx);
        }
        let recipient = ctx.address().recipient();
        match catch(|| inc.release_held(&self.env, &recipient)) {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                // No barrier behind events the window actors do not have
                // yet: the checkpoint fails like a write to a database that
                // is down.
                self.env
                    .metrics
                    .checkpoint_outcome(CheckpointOutcome::Failed);
                if final_one {
                    ctx.run_later(RESTORE_RETRY, |act, ctx| act.begin_checkpoint(true, ctx));
                    return;
                }
                let step = inc.phase.ended(false);
                return self.advance(step, ctx);
            }
            Ok(Err(e)) => return self.fail(ActorKind::Consumer, e.into(), ctx),
            Err(reason) => {
                return self.fail(ActorKind::Consumer, ConsumerError::Panicked(reason), ctx)
            }
        }
        // A file source at its end closes every window; a caught-up Kafka
        // source lets idle streams' watermarks follow the wall clock.
        let end_of_input = final_one && inc.end_of_input();
        let idle_wm =
            (inc.caught_up() && !end_of_input).then(|| minute_of(Utc::now() - self.env.lateness));
        let offsets = inc.next_offsets();
        // One channel for every answer: collecting 100k answers is one
        // receive loop, not 100k futures woken one by one.
        let (reply, mut replies) = mpsc::unbounded_channel::<BarrierAnswer>();
        let mut targets = Vec::new();
        for (stream_id, entry) in &mut inc.streams {
            let idle = idle_wm.filter(|wm| {
                entry.last_event.elapsed() >= cfg.idle_finalize
                    && entry.idle_to.is_none_or(|t| t < *wm)
            });
            let close_all = end_of_input && entry.open_windows > 0;
            if !entry.touched && idle.is_none() && !close_all {
                continue;
            }
            entry.touched = false;
            if idle.is_some() {
                entry.idle_to = idle;
            }
            // do_send: enqueued now, behind every batch already sent and
            // ahead of any batch dispatched after this handler returns.
            entry.addr.do_send(Barrier {
                idle_watermark: idle,
                end_of_input,
                next_offset: offsets.get(&entry.partition).copied(),
                reply: reply.clone(),
            });
            targets.push(stream_id.clone());
        }
        // Once every barrier is answered or dropped, the channel closes.
        drop(reply);
        let cp = Checkpoint {
            epoch: inc.epoch,
            owner: inc.owner.clone(),
            group_id: cfg.group_id.clone(),
            topic: cfg.topic.clone(),
            partitions: inc.partitions.keys().copied().collect(),
            offsets,
            dead_letters: std::mem::take(&mut inc.pending.dead_letters),
            events: std::mem::take(&mut inc.pending.events_since_barrier),
            files: self.env.files.clone(),
            ..Checkpoint::default()
        };
        let expected = targets.len();
        let collecting = async move {
            let mut collected = Collected::new(cp, expected);
            while collected.streams.len() < expected {
                match replies.recv().await {
                    Some((stream_id, Ok(reply))) => collected.add(stream_id, reply),
                    Some((_, Err(error))) => {
                        collected.error = Some(error);
                        break;
                    }
                    None => break,
                }
            }
            collected
        };
        let collect = collecting
            .into_actor(self)
            .map(move |collected, act, ctx| act.collected(collected, targets, final_one, ctx));
        ctx.spawn(collect);
    }

    /// Takes the folded answers into the consumer's stream table and writes
    /// the checkpoint, or fails if a window actor could not answer.
    fn collected(
        &mut self,
        collected: Collected,
        targets: Vec<String>,
        final_one: bool,
        ctx: &mut Context<Self>,
    ) {
        let metrics = &self.env.metrics;
        let Lifecycle::Running(inc) = &mut self.lifecycle else {
            return;
        };
        let Collected {
            cp,
            streams,
            late,
            finalized,
            error,
        } = collected;
        if cp.epoch != inc.epoch {
            let step = inc.phase.ended(false);
            return self.advance(step, ctx);
        }
        if let Some(error) = error {
            return self.fail(ActorKind::Window, error.into(), ctx);
        }
        if streams.len() < targets.len() {
            let answered: std::collections::HashSet<&str> =
                streams.iter().map(|s| s.stream_id.as_str()).collect();
            let stream_id = targets
                .into_iter()
                .find(|s| !answered.contains(s.as_str()))
                .unwrap_or_default();
            let error = BarrierError::Gone { stream_id };
            return self.fail(ActorKind::Window, error.into(), ctx);
        }
        for answered in streams {
            if let Some(entry) = inc.streams.get_mut(&answered.stream_id) {
                entry.open_windows = answered.open_windows;
                entry.watermark = answered.watermark;
                entry.evict = answered.open_windows == 0 && !entry.touched;
            }
        }
        metrics.events_late.inc_by(late);
        metrics
            .events_rejected
            .with_label_values(&[RejectReason::Late.as_str()])
            .inc_by(late);
        metrics.windows_finalized.inc_by(finalized);
        let open: usize = inc.streams.values().map(|e| e.open_windows).sum();
        metrics
            .open_windows
            .set(i64::try_from(open).unwrap_or(i64::MAX));
        if let Some(wm) = inc.streams.values().filter_map(|e| e.watermark).max() {
            metrics
                .watermark_lag
                .set((Utc::now() - wm).num_seconds().max(0));
        }
        self.write(Arc::new(cp), final_one, ctx);
    }

    /// Sends a checkpoint to the writer and handles the outcome.
    fn write(&mut self, cp: Arc<Checkpoint>, final_one: bool, ctx: &mut Context<Self>) {
        let started = Instant::now();
        let sent = self.writer.send(WriteCheckpoint(cp.clone()));
        let handle = sent.into_actor(self).map(move |result, act, ctx| {
            let metrics = act.env.metrics.clone();
            let Lifecycle::Running(inc) = &mut act.lifecycle else {
                return;
            };
            if cp.epoch != inc.epoch {
                let step = inc.phase.ended(false);
                return act.advance(step, ctx);
            }
            let error = match result {
                Ok(Ok(())) => {
                    log::debug!(
                        "Checkpoint of {} events committed in {} ms: {} window rows, {} stream states, {} dead letters.",
                        cp.events,
                        started.elapsed().as_millis(),
                        cp.rows.len(),
                        cp.streams.len(),
                        cp.dead_letters.len()
                    );
                    inc.refusals = 0;
                    return act.committed(&cp, ctx);
                }
                Ok(Err(error)) => error,
                Err(e) => {
                    let error = ConsumerError::Writer(format!("writer unreachable: {e}"));
                    return act.fail(ActorKind::Writer, error, ctx);
                }
            };
            match error {
                WriteError::Database(e) => {
                    metrics.checkpoint_outcome(CheckpointOutcome::Failed);
                    act.env.status.set_error(Some(e.clone()));
                    let delay = act.backoff.next_delay().max(Duration::from_millis(200));
                    log::warn!("Checkpoint not committed ({e}); retrying in {delay:?}.");
                    act.retry_later(cp, final_one, delay, ctx);
                }
                WriteError::Refused(e) => {
                    metrics.checkpoint_outcome(CheckpointOutcome::Refused);
                    inc.refusals += 1;
                    if inc.refusals >= MAX_REFUSALS {
                        return act.halt(format!(
                            "the pipeline is halted: Postgres refused the same checkpoint {MAX_REFUSALS} times ({e}); this is a defect, the data since the last checkpoint is not committed"
                        ));
                    }
                    let delay = Duration::from_millis(500);
                    log::warn!(
                        "Postgres refused the checkpoint's data ({e}); trying again in {delay:?} before halting."
                    );
                    act.env.status.set_error(Some(e));
                    act.retry_later(cp, final_one, delay, ctx);
                }
                WriteError::Fenced { reason, .. } => {
                    // Same epoch here, so another process owns a partition
                    // now: this incarnation's state is stale. Start over.
                    metrics.checkpoint_outcome(CheckpointOutcome::Fenced);
                    act.fail(ActorKind::Consumer, ConsumerError::Fenced(reason), ctx);
                }
                WriteError::Panicked(reason) => {
                    act.fail(ActorKind::Writer, ConsumerError::Writer(reason), ctx)
                }
            }
        });
        ctx.spawn(handle);
    }

    fn retry_later(
        &mut self,
        cp: Arc<Checkpoint>,
        final_one: bool,
        delay: Duration,
        ctx: &mut Context<Self>,
    ) {
        ctx.run_later(delay, move |act, ctx| {
            let Lifecycle::Running(inc) = &mut act.lifecycle else {
                return;
            };
            if cp.epoch == inc.epoch {
                act.write(cp, final_one, ctx);
            } else {
                let step = inc.phase.ended(false);
                act.advance(step, ctx);
            }
        });
    }

    /// Stops for good where retrying cannot help and skipping would lose
    /// data (Postgres keeps refusing data the contract let through, an
    /// input file cannot be read): an operator must look; `/ready` says why.
    pub(super) fn halt(&mut self, reason: String) {
        log::error!("{reason}.");
        self.env.status.set_error(Some(reason));
        self.env.status.set_assigned(0);
        self.lifecycle = Lifecycle::Halted;
        self.env.status.finish();
        if self.shutdown.is_some() {
            self.finish_shutdown();
        }
    }

    fn committed(&mut self, cp: &Checkpoint, ctx: &mut Context<Self>) {
        let metrics = &self.env.metrics;
        let Lifecycle::Running(inc) = &mut self.lifecycle else {
            return;
        };
        metrics.checkpoint_outcome(CheckpointOutcome::Committed);
        metrics.checkpoint_committed(Utc::now().timestamp_millis());
        self.env.status.set_error(None);
        inc.pending.uncommitted = inc.pending.uncommitted.saturating_sub(cp.events);
        metrics
            .uncommitted_events
            .set(i64::try_from(inc.pending.uncommitted).unwrap_or(i64::MAX));
        if let Input::Kafka(client) = &inc.input {
            let client = client.clone();
            let final_one = inc.phase == crate::checkpoint::Phase::Final;
            copy_offsets_to_kafka(&client, cp, inc, final_one, metrics);
        }
        inc.evict_closed(&self.env);
        let step = inc.phase.ended(true);
        self.advance(step, ctx);
        self.resume_paused(ctx);
    }
}

/// Commits a copy of the checkpoint's offsets to Kafka for lag tools (at
/// most every `KAFKA_COMMIT_EVERY`, so the group coordinator is not kept
/// busy by every checkpoint) and updates the lag gauge.
fn copy_offsets_to_kafka(
    client: &BaseConsumer<PipelineContext>,
    cp: &Checkpoint,
    inc: &mut Incarnation,
    final_one: bool,
    metrics: &Metrics,
) {
    let mut tpl = TopicPartitionList::new();
    for (p, next) in &cp.offsets {
        if inc.partitions.contains_key(p) {
            // Infallible for a fresh list and a concrete offset.
            let _ = tpl.add_partition_offset(&cp.topic, *p, Offset::Offset(*next));
        }
    }
    let due = inc
        .last_kafka_commit
        .is_none_or(|t| t.elapsed() >= KAFKA_COMMIT_EVERY);
    if tpl.count() > 0 && (due || final_one) {
        inc.last_kafka_commit = Some(Instant::now());
        if let Err(e) = client.commit(&tpl, CommitMode::Async) {
            if !std::mem::replace(&mut inc.kafka_commit_warned, true) {
                log::warn!("Committing offsets to Kafka failed ({e}); Postgres holds them.");
            }
        }
    }
    let high = client.context().high_watermarks();
    for (p, next) in &cp.offsets {
        if let Some(hw) = high.get(p) {
            metrics
                .consumer_lag
                .with_label_values(&[&p.to_string()])
                .set((hw - next).max(0));
        }
    }
}

/// The answers to one barrier, folded into the checkpoint as they arrive:
/// each window actor's changes move into the checkpoint's columns at once,
/// so 100k answers are never held side by side as well.
struct Collected {
    /// The checkpoint, holding the changes of every answer so far.
    cp: Checkpoint,
    /// What the consumer keeps of each answer, for its stream table.
    streams: Vec<Answered>,
    /// Late events among the answers.
    late: u64,
    /// Windows the answers finalized.
    finalized: u64,
    /// The first answer that was an error (a refusal, a failed or panicked
    /// actor); collection stops there.
    error: Option<BarrierError>,
}

/// One stream's answer, without its changes.
struct Answered {
    /// The answering stream.
    stream_id: String,
    /// Windows it holds open after the barrier.
    open_windows: usize,
    /// Its watermark after the barrier.
    watermark: Option<DateTime<Utc>>,
}

impl Collected {
    /// Nothing collected yet for `cp`, from `expected` window actors.
    fn new(cp: Checkpoint, expected: usize) -> Self {
        Collected {
            cp,
            streams: Vec::with_capacity(expected),
            late: 0,
            finalized: 0,
            error: None,
        }
    }

    /// Moves one stream's answer into the checkpoint.
    fn add(&mut self, stream_id: String, reply: BarrierReply) {
        self.late += reply.late.len() as u64;
        self.finalized += reply.finalized;
        self.cp.add(reply.partition, reply.changes);
        self.cp.dead_letters.extend(reply.late);
        self.streams.push(Answered {
            stream_id,
            open_windows: reply.open_windows,
            watermark: reply.watermark,
        });
    }
}
