//! ConsumerActor: reads the topic with rdkafka, dead-letters what fails the
//! event contract, fans valid events out to per-stream window actors (one
//! message per stream per poll batch) and drives the checkpoint cycle.
//!
//! Delivery: exactly once into Postgres. Offsets are never auto-committed;
//! the next offset of every partition is committed in the same transaction
//! as the results it covers (see `checkpoint`), and only afterwards to Kafka
//! for lag tools. On assignment the consumer starts at the offsets stored in
//! Postgres. Any failure (its own panic, a window actor's, the writer's)
//! stops it; its `Supervisor` restarts it with backoff, dropping every
//! window actor and re-joining the group, so processing resumes from the
//! last committed checkpoint and nothing is counted twice.

mod context;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio::sync::oneshot;

pub use context::{AssignmentEvent, PipelineContext};

use crate::checkpoint::{Checkpoint, DeadLetter, Fence, Snapshot};
use crate::config::{FaultTarget, OffsetReset, PipelineConfig};
use crate::event::{Event, RejectReason};
use crate::messages::{
    Barrier, BarrierReply, Envelope, EventBatch, Shutdown, WindowFailed, WriteCheckpoint,
};
use crate::metrics::Metrics;
use crate::pipeline::PipelineStatus;
use crate::store::Pool;
use crate::supervise::{catch, Backoff, Faults};
use crate::window::{minute_of, StreamWindows};
use crate::window_actor::WindowActor;
use crate::writer::{WriteError, WriterActor};

/// Most messages taken from librdkafka in one poll batch.
const MAX_BATCH: usize = 5_000;
/// Pause between polls when the last batch drained the local queue.
const IDLE_POLL: Duration = Duration::from_millis(10);

/// Poll the broker for the next batch.
#[derive(Message)]
#[rtype(result = "()")]
struct Poll;

/// A stream the consumer routes to.
struct StreamEntry {
    addr: Addr<WindowActor>,
    /// Received events since the last barrier.
    touched: bool,
    /// When its last batch was handed over.
    last_event: Instant,
    /// The idle watermark it was last advanced to.
    idle_to: Option<DateTime<Utc>>,
    open_windows: usize,
    watermark: Option<DateTime<Utc>>,
}

/// The consumer actor.
pub struct ConsumerActor {
    cfg: PipelineConfig,
    pool: Pool,
    fence: Arc<Fence>,
    writer: Addr<WriterActor>,
    metrics: Metrics,
    faults: Faults,
    status: Arc<PipelineStatus>,
    window_arbiter: ArbiterHandle,
    backoff: Backoff,
    start_delay: Duration,
    self_addr: Option<Addr<ConsumerActor>>,
    // Per incarnation: everything below is dropped on restart.
    consumer: Option<Arc<BaseConsumer<PipelineContext>>>,
    /// This incarnation's ownership token for `partition_owners`.
    owner: String,
    epoch: u64,
    assigned: BTreeSet<i32>,
    at_eof: BTreeSet<i32>,
    next_offsets: BTreeMap<i32, i64>,
    streams: HashMap<String, StreamEntry>,
    dead_letters: Vec<DeadLetter>,
    events_since_barrier: u64,
    uncommitted: u64,
    in_flight: bool,
    shutting_down: bool,
    final_pending: bool,
    shutdown_reply: Option<oneshot::Sender<()>>,
}

/// What a poll batch ended with.
enum PollOutcome {
    /// Keep polling; `full` when the batch hit [`MAX_BATCH`].
    Continue { full: bool },
    /// The assignment could not be restored: restart.
    Restart(String),
}

impl ConsumerActor {
    /// A consumer for `cfg`, writing through `writer`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: PipelineConfig,
        pool: Pool,
        fence: Arc<Fence>,
        writer: Addr<WriterActor>,
        metrics: Metrics,
        faults: Faults,
        status: Arc<PipelineStatus>,
        window_arbiter: ArbiterHandle,
    ) -> Self {
        ConsumerActor {
            cfg,
            pool,
            fence,
            writer,
            metrics,
            faults,
            status,
            window_arbiter,
            backoff: Backoff::default(),
            start_delay: Duration::ZERO,
            self_addr: None,
            consumer: None,
            owner: String::new(),
            epoch: 0,
            assigned: BTreeSet::new(),
            at_eof: BTreeSet::new(),
            next_offsets: BTreeMap::new(),
            streams: HashMap::new(),
            dead_letters: Vec::new(),
            events_since_barrier: 0,
            uncommitted: 0,
            in_flight: false,
            shutting_down: false,
            final_pending: false,
            shutdown_reply: None,
        }
    }

    fn lateness(&self) -> TimeDelta {
        TimeDelta::from_std(self.cfg.allowed_lateness).unwrap_or(TimeDelta::MAX)
    }

    /// Creates the rdkafka consumer and joins the group.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.owner = format!(
            "{}-pid{}-{}",
            self.cfg.group_id,
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        let context = PipelineContext::new(
            self.pool.clone(),
            self.fence.clone(),
            self.cfg.group_id.clone(),
            self.cfg.topic.clone(),
            self.cfg.offset_reset,
            self.status.clone(),
            self.owner.clone(),
        );
        let reset = match self.cfg.offset_reset {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        };
        let created: Result<BaseConsumer<PipelineContext>, KafkaError> = ClientConfig::new()
            .set("bootstrap.servers", &self.cfg.brokers)
            .set("group.id", &self.cfg.group_id)
            // Offsets live in Postgres with the results; Kafka only gets a
            // copy after each database commit.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Only used if a partition has no stored offset and the explicit
            // start position we assign is somehow rejected.
            .set("auto.offset.reset", reset)
            // End-of-partition events tell when every partition is caught
            // up, which gates idle finalization.
            .set("enable.partition.eof", "true")
            // Statistics carry each partition's end offset, for the lag gauge.
            .set("statistics.interval.ms", "1000")
            // Bound the prefetch queue: memory stays flat while paused.
            .set("queued.max.messages.kbytes", "16384")
            // A crashed member is noticed in seconds, so its replacement
            // gets the partitions quickly.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .create_with_context(context);
        let consumer = match created.and_then(|c| {
            c.subscribe(&[&self.cfg.topic])?;
            Ok(c)
        }) {
            Ok(c) => c,
            Err(e) => {
                self.fail(
                    "consumer",
                    format!("cannot create the Kafka consumer: {e}"),
                    ctx,
                );
                return;
            }
        };
        log::info!(
            "Consumer joined group {} on topic {} at {}.",
            self.cfg.group_id,
            self.cfg.topic,
            self.cfg.brokers
        );
        self.consumer = Some(Arc::new(consumer));
        ctx.notify(Poll);
    }

    /// Logs the failure, counts the restart, and stops; the supervisor
    /// restarts from the last committed checkpoint.
    fn fail(&mut self, actor: &str, reason: String, ctx: &mut Context<Self>) {
        log::warn!(
            "The {actor} actor failed ({reason}); rolling back to the last committed checkpoint."
        );
        self.metrics
            .actor_restarts
            .with_label_values(&[actor])
            .inc();
        ctx.stop();
    }

    fn poll_once(&mut self) -> PollOutcome {
        let Some(consumer) = self.consumer.clone() else {
            return PollOutcome::Continue { full: false };
        };
        let now = Utc::now();
        let mut groups: HashMap<String, Vec<Envelope>> = HashMap::new();
        let mut consumed: u64 = 0;
        let mut rejected: BTreeMap<RejectReason, u64> = BTreeMap::new();
        let mut full = false;
        for n in 0..=MAX_BATCH {
            if n == MAX_BATCH {
                full = true;
                break;
            }
            let polled = consumer.poll(Duration::ZERO);
            for event in consumer.context().take_events() {
                match event {
                    AssignmentEvent::Failed(reason) => return PollOutcome::Restart(reason),
                    AssignmentEvent::Revoked => {
                        groups.clear();
                        self.revoke_all();
                    }
                    AssignmentEvent::Assigned {
                        epoch,
                        partitions,
                        restored,
                    } => {
                        self.dispatch(std::mem::take(&mut groups));
                        if let Err(reason) =
                            self.restore(epoch, partitions, restored.offsets, restored.snapshots)
                        {
                            return PollOutcome::Restart(reason);
                        }
                    }
                }
            }
            let msg = match polled {
                None => break,
                Some(Ok(msg)) => msg,
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    self.at_eof.insert(p);
                    continue;
                }
                Some(Err(e)) => {
                    log::warn!("Kafka consumer error: {e}.");
                    break;
                }
            };
            let partition = msg.partition();
            let offset = msg.offset();
            if !self.assigned.contains(&partition)
                || self
                    .next_offsets
                    .get(&partition)
                    .is_some_and(|next| offset < *next)
            {
                // Prefetched before a revoke or seek: not ours to count.
                continue;
            }
            self.faults.tick(FaultTarget::Consumer, 1);
            consumed += 1;
            self.next_offsets.insert(partition, offset + 1);
            self.at_eof.remove(&partition);
            let payload = msg.payload().unwrap_or_default();
            match Event::parse(payload, now) {
                Ok(event) => groups
                    .entry(event.stream_id.clone())
                    .or_default()
                    .push(Envelope {
                        event,
                        partition,
                        offset,
                        payload: payload.to_vec(),
                        key: msg.key().map(<[u8]>::to_vec),
                    }),
                Err(rejection) => {
                    *rejected.entry(rejection.reason).or_default() += 1;
                    self.dead_letters.push(DeadLetter {
                        partition,
                        offset,
                        reason: rejection.reason,
                        error: rejection.detail,
                        payload: payload.to_vec(),
                        key: msg.key().map(<[u8]>::to_vec),
                    });
                }
            }
        }
        self.dispatch(groups);
        self.metrics.events_consumed.inc_by(consumed);
        for (reason, n) in rejected {
            self.metrics
                .events_rejected
                .with_label_values(&[reason.as_str()])
                .inc_by(n);
        }
        self.events_since_barrier += consumed;
        self.uncommitted += consumed;
        self.metrics
            .uncommitted_events
            .set(i64::try_from(self.uncommitted).unwrap_or(i64::MAX));
        PollOutcome::Continue { full }
    }

    /// Hands each stream its events, spawning window actors on first sight.
    fn dispatch(&mut self, groups: HashMap<String, Vec<Envelope>>) {
        let now = Instant::now();
        for (stream_id, events) in groups {
            let partition = events[0].partition;
            if !self.streams.contains_key(&stream_id) {
                let model = StreamWindows::new(stream_id.clone());
                self.spawn_window(model, partition);
            }
            if let Some(entry) = self.streams.get_mut(&stream_id) {
                entry.touched = true;
                entry.last_event = now;
                entry.addr.do_send(EventBatch(events));
            }
        }
        self.metrics
            .window_actors
            .set(i64::try_from(self.streams.len()).unwrap_or(i64::MAX));
    }

    fn spawn_window(&mut self, model: StreamWindows, partition: i32) {
        let stream_id = model.stream_id().to_owned();
        let open_windows = model.open_windows();
        let watermark = model.watermark();
        let lateness = self.lateness();
        let epoch = self.epoch;
        let faults = self.faults.clone();
        let on_failure = self.self_recipient();
        let addr = WindowActor::start_in_arbiter(&self.window_arbiter, move |_| {
            WindowActor::new(model, partition, lateness, epoch, on_failure, faults)
        });
        self.streams.insert(
            stream_id,
            StreamEntry {
                addr,
                touched: false,
                last_event: Instant::now(),
                idle_to: None,
                open_windows,
                watermark,
            },
        );
    }

    fn self_recipient(&self) -> Recipient<WindowFailed> {
        self.self_addr
            .clone()
            .expect("started() records the address before anything is consumed")
            .recipient()
    }

    /// Called whenever a checkpoint ends without committing.
    fn settle(&mut self, ctx: &mut Context<Self>) {
        self.in_flight = false;
        if std::mem::take(&mut self.final_pending) {
            self.start_checkpoint(true, ctx);
        }
    }

    /// Takes over partitions at their restored offsets and snapshots.
    fn restore(
        &mut self,
        epoch: u64,
        partitions: Vec<i32>,
        offsets: BTreeMap<i32, i64>,
        snapshots: Vec<Snapshot>,
    ) -> Result<(), String> {
        self.epoch = epoch;
        for p in &partitions {
            self.assigned.insert(*p);
            self.at_eof.remove(p);
            match offsets.get(p) {
                Some(next) => self.next_offsets.insert(*p, *next),
                None => self.next_offsets.remove(p),
            };
        }
        for snapshot in snapshots {
            let model: StreamWindows = serde_json::from_value(snapshot.state).map_err(|e| {
                format!(
                    "the snapshot of stream {} is unreadable: {e}",
                    snapshot.stream_id
                )
            })?;
            self.spawn_window(model, snapshot.partition);
        }
        self.status.set_assigned(self.assigned.len());
        Ok(())
    }

    /// Forgets every partition and all uncommitted work (after a revoke).
    fn revoke_all(&mut self) {
        if !self.assigned.is_empty() {
            log::info!(
                "Partitions {:?} revoked; uncommitted work dropped.",
                self.assigned
            );
        }
        // Results of checkpoints still in flight no longer match any epoch.
        self.epoch = 0;
        self.assigned.clear();
        self.at_eof.clear();
        self.next_offsets.clear();
        self.streams.clear();
        self.dead_letters.clear();
        self.events_since_barrier = 0;
        self.uncommitted = 0;
        self.in_flight = false;
        self.status.set_assigned(0);
        self.metrics.window_actors.set(0);
    }

    /// Starts a checkpoint unless one is in flight (SPEC §4).
    fn start_checkpoint(&mut self, final_one: bool, ctx: &mut Context<Self>) {
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

    fn refresh_window_gauges(&self) {
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
    fn write(&mut self, cp: Arc<Checkpoint>, final_one: bool, ctx: &mut Context<Self>) {
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

    fn committed(&mut self, cp: &Checkpoint, final_one: bool, ctx: &mut Context<Self>) {
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
            if tpl.count() > 0 {
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

    fn finish_shutdown(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            log::info!("Final checkpoint written; leaving the consumer group.");
            drop(consumer);
        }
        if let Some(reply) = self.shutdown_reply.take() {
            let _ = reply.send(());
        }
    }

    fn schedule_poll(&mut self, full: bool, ctx: &mut Context<Self>) {
        if self.shutting_down || self.consumer.is_none() {
            return;
        }
        if self.events_since_barrier >= self.cfg.checkpoint_events && !self.in_flight {
            self.start_checkpoint(false, ctx);
        }
        let paused = self.uncommitted >= self.cfg.max_uncommitted_events;
        self.metrics.consumer_paused.set(i64::from(paused));
        if paused {
            ctx.notify_later(Poll, Duration::from_millis(50));
        } else if full {
            ctx.notify(Poll);
        } else {
            ctx.notify_later(Poll, IDLE_POLL);
        }
    }
}

impl Actor for ConsumerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.self_addr = Some(ctx.address());
        ctx.run_interval(self.cfg.checkpoint_interval, |act, ctx| {
            if !act.shutting_down {
                act.start_checkpoint(false, ctx);
            }
        });
        let delay = std::mem::take(&mut self.start_delay);
        if delay.is_zero() {
            self.connect(ctx);
        } else {
            log::info!("Restarting the consumer in {delay:?}.");
            ctx.run_later(delay, |act, ctx| act.connect(ctx));
        }
    }
}

impl Supervised for ConsumerActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Anything in flight belongs to the old incarnation: fence it off.
        self.fence.bump();
        self.consumer = None;
        self.revoke_all();
        self.shutting_down = false;
        self.final_pending = false;
        self.start_delay = self.backoff.next_delay();
    }
}

impl Handler<Poll> for ConsumerActor {
    type Result = ();

    fn handle(&mut self, _: Poll, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        if self.uncommitted >= self.cfg.max_uncommitted_events {
            return self.schedule_poll(false, ctx);
        }
        match catch(|| self.poll_once()) {
            Ok(PollOutcome::Continue { full }) => self.schedule_poll(full, ctx),
            Ok(PollOutcome::Restart(reason)) => self.fail("consumer", reason, ctx),
            Err(reason) => self.fail("consumer", reason, ctx),
        }
    }
}

impl Handler<WindowFailed> for ConsumerActor {
    type Result = ();

    fn handle(&mut self, msg: WindowFailed, ctx: &mut Context<Self>) {
        if msg.epoch == self.epoch && self.consumer.is_some() {
            self.fail(
                "window",
                format!(
                    "window actor of stream {} panicked: {}",
                    msg.stream_id, msg.reason
                ),
                ctx,
            );
        }
    }
}

impl Handler<Shutdown> for ConsumerActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.shutdown_reply = Some(tx);
        self.shutting_down = true;
        log::info!("Shutting down: writing a final checkpoint.");
        self.start_checkpoint(true, ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
