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

mod checkpointing;
mod context;
mod poll;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use tokio::sync::oneshot;

pub use context::{AssignmentEvent, PipelineContext};

use crate::checkpoint::{DeadLetter, Fence};
use crate::config::{OffsetReset, PipelineConfig};
use crate::messages::{Shutdown, WindowFailed};
use crate::metrics::Metrics;
use crate::pipeline::PipelineStatus;
use crate::store::Pool;
use crate::supervise::{catch, Backoff, Faults};
use crate::window_actor::WindowActor;
use crate::writer::WriterActor;

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
    last_kafka_commit: Option<Instant>,
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
            last_kafka_commit: None,
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
            // A crashed member is noticed within 30 s. Shorter sessions get
            // expired by a busy broker (tansu under load answers heartbeats
            // late), and every expiry is a rebalance and a state reload.
            .set("session.timeout.ms", "30000")
            .set("heartbeat.interval.ms", "3000")
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
