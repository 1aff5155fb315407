//! The checkpoint cycle of the consumer: barrier, collection of the window
//! actors' changes, the writer's transaction, and what follows a commit or
//! a failure (see `crate::checkpoint` for the protocol).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use futures_util::future::join_all;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::ConsumerActor;
use crate::checkpoint::Checkpoint;
use crate::event::RejectReason;
use crate::messages::{Barrier, BarrierReply, WriteCheckpoint};
use crate::window::minute_of;
use crate::writer::WriteError;

/// Least time between two offset commits to Kafka.
const KAFKA_COMMIT_EVERY: Duration = Duration::from_secs(5);

impl ConsumerActor {
    /// Called whenever a checkpoint ends without committing.
    pub(super) fn settle(&mut self, ctx: &mut Context<Self>) {
        self.in_flight = false;
        if std::mem::take(&mut self.final_pending) {
            self.start_checkpoint(true, ctx);
        }
    }

    /// Starts a checkpoint unless one is in flight (SPEC §4).
    pub(super) fn start_checkpoint(&mut self, final_one: bool, ctx: &mut Context<Self>) {
        if self.in_flight {
            self.final_pending |= final_one;
            return;
        }
        if self.consumer.is_none() || self.assigned.is_empty() {
            if final_one {
                self.finish_shutdown();
            }
            return;
        }
        let now = Utc::now();
        let caught_up = self.assigned.iter().all(|p| self.at_eof.contains(p));
        let idle_wm = caught_up.then(|| minute_of(now - self.lateness()));
        let idle_after = self.cfg.idle_finalize;
        let mut targets = Vec::new();
        for (stream_id, entry) in &mut self.streams {
            let idle = idle_wm.filter(|wm| {
                entry.last_event.elapsed() >= idle_after && entry.idle_to.is_none_or(|t| t < *wm)
            });
            if entry.touched || idle.is_some() {
                entry.touched = false;
                if idle.is_some() {
                    entry.idle_to = idle;
                }
                targets.push((stream_id.clone(), entry.addr.clone(), idle));
            }
        }
        let offsets = self.next_offsets.clone();
        let dead_letters = std::mem::take(&mut self.dead_letters);
        let events = std::mem::take(&mut self.events_since_barrier);
        let epoch = self.epoch;
        self.in_flight = true;
        let replies = join_all(
            targets
                .into_iter()
                .map(|(stream_id, addr, idle)| async move {
                    let reply = addr
                        .send(Barrier {
                            idle_watermark: idle,
                        })
                        .await;
                    (stream_id, reply)
                }),
        );
        let collect = replies.into_actor(self).map(move |replies, act, ctx| {
            if epoch != act.epoch {
                return act.settle(ctx);
            }
            let mut cp = Checkpoint {
                epoch,
                owner: act.owner.clone(),
                group_id: act.cfg.group_id.clone(),
                topic: act.cfg.topic.clone(),
                offsets,
                dead_letters,
                events,
                ..Checkpoint::default()
            };
            let mut late = 0u64;
            let mut finalized = 0u64;
            for (stream_id, reply) in replies {
                let reply: BarrierReply = match reply {
                    Ok(Ok(reply)) => reply,
                    Ok(Err(reason)) => return act.fail("window", reason, ctx),
                    Err(e) => {
                        return act.fail(
                            "window",
                            format!("window actor of {stream_id} is gone: {e}"),
                            ctx,
                        )
                    }
                };
                if let Some(entry) = act.streams.get_mut(&stream_id) {
                    entry.open_windows = reply.open_windows;
                    entry.watermark = reply.watermark;
                }
                late += reply.late.len() as u64;
                finalized += reply.finalized;
                cp.rows.extend(reply.changes.rows);
                cp.states.extend(reply.changes.state);
                cp.snapshots.extend(reply.snapshot);
                cp.dead_letters.extend(reply.late);
            }
            act.metrics.events_late.inc_by(late);
            act.metrics
                .events_rejected
                .with_label_values(&[RejectReason::Late.as_str()])
                .inc_by(late);
            act.metrics.windows_finalized.inc_by(finalized);
            act.refresh_window_gauges();
            act.write(Arc::new(cp), final_one, ctx);
        });
        ctx.spawn(collect);
    }

    pub(super) fn refresh_window_gauges(&self) {
        let open: usize = self.streams.values().map(|e| e.open_windows).sum();
        self.metrics
            .open_windows
            .set(i64::try_from(open).unwrap_or(i64::MAX));
        if let Some(wm) = self.streams.values().filter_map(|e| e.watermark).max() {
            self.metrics
                .watermark_lag
                .set((Utc::now() - wm).num_seconds().max(0));
        }
    }

    /// Sends a checkpoint to the writer and handles the outcome.
    pub(super) fn write(&mut self, cp: Arc<Checkpoint>, final_one: bool, ctx: &mut Context<Self>) {
        let sent = self.writer.send(WriteCheckpoint(cp.clone()));
        let handle = sent.into_actor(self).map(move |result, act, ctx| {
            if cp.epoch != act.epoch {
                return act.settle(ctx);
            }
            match result {
                Ok(Ok(())) => act.committed(&cp, final_one, ctx),
                Ok(Err(WriteError::Database(e))) => {
                    act.metrics.checkpoints.with_label_values(&["failed"]).inc();
                    act.status.set_error(Some(e.clone()));
                    let delay = act.backoff.next_delay().max(Duration::from_millis(200));
                    log::warn!("Checkpoint not committed ({e}); retrying in {delay:?}.");
                    ctx.run_later(delay, move |act, ctx| {
                        if cp.epoch == act.epoch {
                            act.write(cp, final_one, ctx);
                        } else {
                            act.settle(ctx);
                        }
                    });
                }
                Ok(Err(WriteError::Fenced { reason, .. })) => {
                    // Same epoch here, so another process owns a partition
                    // now: this incarnation's state is stale. Start over.
                    act.metrics.checkpoints.with_label_values(&["fenced"]).inc();
                    act.fail("consumer", format!("checkpoint fenced off: {reason}"), ctx);
                }
                Ok(Err(WriteError::Panicked(reason))) => act.fail("writer", reason, ctx),
                Err(e) => act.fail("writer", format!("writer unreachable: {e}"), ctx),
            }
        });
        ctx.spawn(handle);
    }

    pub(super) fn committed(&mut self, cp: &Checkpoint, final_one: bool, ctx: &mut Context<Self>) {
        self.in_flight = false;
        self.metrics
            .checkpoints
            .with_label_values(&["committed"])
            .inc();
        self.metrics
            .checkpoint_committed(Utc::now().timestamp_millis());
        self.status.set_error(None);
        self.uncommitted = self.uncommitted.saturating_sub(cp.events);
        self.metrics
            .uncommitted_events
            .set(i64::try_from(self.uncommitted).unwrap_or(i64::MAX));
        if let Some(consumer) = &self.consumer {
            let mut tpl = TopicPartitionList::new();
            for (p, next) in &cp.offsets {
                if self.assigned.contains(p) {
                    // Infallible for a fresh list and a concrete offset.
                    let _ = tpl.add_partition_offset(&cp.topic, *p, Offset::Offset(*next));
                }
            }
            // A copy for lag tools only: at most every KAFKA_COMMIT_EVERY,
            // so the group coordinator is not kept busy by every checkpoint.
            let due = self
                .last_kafka_commit
                .is_none_or(|t| t.elapsed() >= KAFKA_COMMIT_EVERY);
            if tpl.count() > 0 && (due || final_one) {
                self.last_kafka_commit = Some(std::time::Instant::now());
                if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                    log::warn!("Committing offsets to Kafka failed ({e}); Postgres holds them.");
                }
            }
            let high = consumer.context().high_watermarks();
            for (p, next) in &cp.offsets {
                if let Some(hw) = high.get(p) {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[&p.to_string()])
                        .set((hw - next).max(0));
                }
            }
        }
        if final_one {
            self.finish_shutdown();
        } else if self.final_pending {
            self.final_pending = false;
            self.start_checkpoint(true, ctx);
        }
    }

    pub(super) fn finish_shutdown(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            log::info!("Final checkpoint written; leaving the consumer group.");
            drop(consumer);
        }
        if let Some(reply) = self.shutdown_reply.take() {
            let _ = reply.send(());
        }
    }
}
