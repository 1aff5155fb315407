//! ConsumerActor: reads the topic with rdkafka, dead-letters what fails the
//! event contract, fans valid events out to per-stream window actors (one
//! message per stream per poll batch) and drives the checkpoint cycle.
//!
//! Delivery: exactly once into Postgres. Offsets are never auto-committed;
//! the next offset of every partition is committed in the same transaction
//! as the results it covers (see `crate::checkpoint`), and only afterwards
//! to Kafka for lag tools. Partitions start at the offsets stored in
//! Postgres, with the window state stored beside them.
//!
//! State: the actor's [`Lifecycle`] holds at most one [`Incarnation`]: the
//! Kafka client, the ownership token and epoch, the assignment, the window
//! actors and every piece of uncommitted work. Any failure (its own panic,
//! a window actor's, the writer's, a fenced checkpoint) stops the actor;
//! its `Supervisor` restarts it with backoff and `restarting` drops the
//! incarnation in one place, so processing resumes from the last committed
//! checkpoint and nothing is counted twice.
//!
//! Partitions come either from self-assignment (every partition of the
//! topic, no group membership, fenced by leases in `partition_owners`) or
//! from the consumer group's rebalances (see [`AssignmentMode`]).

mod batch;
mod checkpointing;
mod claim;
mod context;
mod file_source;
mod incarnation;
mod poll;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{TimeDelta, Utc};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use tokio::sync::oneshot;

pub use context::{AssignmentEvent, PipelineContext};

use crate::checkpoint::{Fence, Step};
use crate::config::{AssignmentMode, OffsetReset, PipelineConfig, Source};
use crate::messages::{Shutdown, WindowFailed};
use crate::metrics::Metrics;
use crate::pipeline::PipelineStatus;
use crate::store::{self, Pool};
use crate::supervise::{catch, ActorKind, Backoff, Faults};
use crate::writer::WriterActor;
use file_source::{FileInput, FileSource};
use incarnation::{Incarnation, Input};

/// Events sent to window actors and not yet applied at which reading
/// waits: the readers and parsers cannot run ahead of the window actors
/// by more, so a checkpoint barrier queued behind them is answered soon
/// and the CPU goes where the pipeline is slowest.
const WINDOW_BACKLOG: usize = 40_000;
/// Most messages taken from librdkafka in one poll batch.
const MAX_BATCH: usize = 5_000;
/// Pause between polls when the last batch drained the local queue.
/// librdkafka keeps fetching into its queue meanwhile, and what is applied
/// shows only at the next checkpoint (`CHECKPOINT_INTERVAL`, 1 s by
/// default), so a short pause buys nothing: each wakeup of the actor
/// system was most of a quiet `serve`'s CPU (100 a second at 10 ms).
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Retry of a held batch's restore while Postgres cannot be reached, and
/// the longest such a retry waits for a connection.
const RESTORE_RETRY: Duration = Duration::from_millis(500);

/// Poll the broker for the next batch.
#[derive(Message)]
#[rtype(result = "()")]
struct Poll;

/// Self-assignment: try to claim every partition of the topic.
#[derive(Message)]
#[rtype(result = "()")]
struct Claim;

/// Why the consumer gives up its incarnation (and restarts from the last
/// committed checkpoint).
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The Kafka client could not be created or subscribed.
    #[error("cannot create the Kafka consumer: {0}")]
    Client(#[source] KafkaError),
    /// Partitions could not be restored from Postgres and positioned.
    #[error("cannot restore the assignment: {0}")]
    Restore(#[from] RestoreError),
    /// A window actor could not answer a barrier.
    #[error(transparent)]
    Barrier(#[from] crate::checkpoint::BarrierError),
    /// A window actor panicked while applying events.
    #[error("the window actor of stream {stream_id} panicked: {reason}")]
    WindowPanicked {
        /// The stream.
        stream_id: String,
        /// The panic message.
        reason: String,
    },
    /// Another consumer owns a partition this checkpoint covers.
    #[error("checkpoint fenced off: {0}")]
    Fenced(String),
    /// The writer panicked or is gone.
    #[error("the writer failed: {0}")]
    Writer(String),
    /// This actor panicked.
    #[error("the consumer panicked: {0}")]
    Panicked(String),
    /// An input file could not be read.
    #[error(transparent)]
    Read(#[from] file_source::ReadError),
    /// The file reader thread died (a panic); the restart starts another.
    #[error(transparent)]
    ReaderGone(#[from] file_source::ReaderGone),
}

/// Why partitions could not be taken over.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Postgres could not be read.
    #[error("Postgres: {0}")]
    Database(#[from] store::StoreError),
    /// The Kafka client refused the positions or the assignment.
    #[error("Kafka: {0}")]
    Assign(#[from] KafkaError),
    /// The group coordinator reported a rebalance error.
    #[error("rebalance error: {0}")]
    Rebalance(String),
}

/// Where the consumer is in its life.
enum Lifecycle {
    /// Not connected: starting, or waiting out a restart backoff.
    Down,
    /// Connected, with everything that belongs to this incarnation.
    Running(Box<Incarnation>),
    /// Postgres refused a checkpoint's data: stopped until an operator acts.
    Halted,
    /// The final checkpoint is written; nothing more happens.
    Stopped,
}

/// What every incarnation shares: settings, metrics and the actors' homes.
pub(crate) struct Env {
    cfg: PipelineConfig,
    /// Postgres, for restores of streams not in memory.
    pool: Pool,
    metrics: Metrics,
    faults: Faults,
    status: Arc<PipelineStatus>,
    window_arbiter: ArbiterHandle,
    lateness: TimeDelta,
    /// A file source's files, named in its dead letters; empty for Kafka.
    files: Arc<[String]>,
}

/// The consumer actor.
pub struct ConsumerActor {
    env: Env,
    pool: Pool,
    fence: Arc<Fence>,
    writer: Addr<WriterActor>,
    backoff: Backoff,
    start_delay: Duration,
    lifecycle: Lifecycle,
    /// A shutdown request, answered once the final checkpoint is written.
    /// Survives restarts: a restart cannot lose it.
    shutdown: Option<oneshot::Sender<()>>,
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
        let lateness = TimeDelta::from_std(cfg.allowed_lateness).unwrap_or(TimeDelta::MAX);
        let files = match &cfg.source {
            Source::Kafka => Arc::default(),
            Source::Files(paths) => paths.iter().map(|p| p.display().to_string()).collect(),
        };
        ConsumerActor {
            env: Env {
                cfg,
                pool: pool.clone(),
                metrics,
                faults,
                status,
                window_arbiter,
                lateness,
                files,
            },
            pool,
            fence,
            writer,
            backoff: Backoff::default(),
            start_delay: Duration::ZERO,
            lifecycle: Lifecycle::Down,
            shutdown: None,
        }
    }

    /// The running incarnation, if any.
    fn running(&mut self) -> Option<&mut Incarnation> {
        match &mut self.lifecycle {
            Lifecycle::Running(inc) => Some(inc),
            _ => None,
        }
    }

    /// Creates the rdkafka client: subscribed to the topic in group mode,
    /// or about to claim every partition in self-assignment mode.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        if !matches!(self.lifecycle, Lifecycle::Down) {
            return;
        }
        let cfg = &self.env.cfg;
        let incarnation = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let owner = store::owner_token(&cfg.instance_id, incarnation);
        if let Source::Files(paths) = &cfg.source {
            let files = FileSource::new(paths.clone(), self.env.status.read_bytes());
            log::info!("Reading {} file(s) as source {}.", paths.len(), cfg.topic);
            let input = Input::Files(FileInput::Unpositioned(Box::new(files)));
            self.lifecycle = Lifecycle::Running(Box::new(Incarnation::new(input, owner)));
            ctx.notify(Claim);
            return;
        }
        let context = PipelineContext::new(
            self.pool.clone(),
            self.fence.clone(),
            cfg.group_id.clone(),
            cfg.topic.clone(),
            cfg.offset_reset,
            self.env.status.clone(),
            owner.clone(),
        );
        let reset = match cfg.offset_reset {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        };
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &cfg.brokers)
            // Needed for the offset copies committed to Kafka in both modes;
            // in self-assignment mode the client never joins the group.
            .set("group.id", &cfg.group_id)
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
            // Group mode: a crashed member is noticed within 30 s. Shorter
            // sessions get expired by a busy broker (tansu under load
            // answers heartbeats late), and every expiry is a rebalance.
            .set("session.timeout.ms", "30000")
            .set("heartbeat.interval.ms", "3000");
        if let (AssignmentMode::Group, Some(id)) = (cfg.assignment, &cfg.group_instance_id) {
            // Static membership: a restarted member with the same id takes
            // its partitions back without waiting for the session timeout.
            client.set("group.instance.id", id);
        }
        let created = client
            .create_with_context::<_, BaseConsumer<PipelineContext>>(context)
            .and_then(|c| {
                if cfg.assignment == AssignmentMode::Group {
                    c.subscribe(&[&cfg.topic])?;
                }
                Ok(c)
            });
        let client = match created {
            Ok(c) => Arc::new(c),
            Err(e) => return self.fail(ActorKind::Consumer, ConsumerError::Client(e), ctx),
        };
        match cfg.assignment {
            AssignmentMode::Group => log::info!(
                "Consumer joined group {} on topic {} at {}.",
                cfg.group_id,
                cfg.topic,
                cfg.brokers
            ),
            AssignmentMode::SelfAssign => log::info!(
                "Consumer connecting to {} to take every partition of {} as instance {} (group {}).",
                cfg.brokers,
                cfg.topic,
                cfg.instance_id,
                cfg.group_id
            ),
        }
        let input = Input::Kafka(client);
        self.lifecycle = Lifecycle::Running(Box::new(Incarnation::new(input, owner)));
        match self.env.cfg.assignment {
            AssignmentMode::Group => ctx.notify(Poll),
            AssignmentMode::SelfAssign => ctx.notify(Claim),
        }
    }

    /// Logs the failure, counts the restart, and stops; the supervisor
    /// restarts from the last committed checkpoint.
    fn fail(&mut self, actor: ActorKind, error: ConsumerError, ctx: &mut Context<Self>) {
        log::warn!(
            "The {actor} actor failed ({error}); rolling back to the last committed checkpoint."
        );
        self.env.metrics.actor_restarted(actor);
        ctx.stop();
    }

    /// Carries out what a checkpoint-phase transition asks for.
    fn advance(&mut self, step: Step, ctx: &mut Context<Self>) {
        match step {
            Step::Wait => {}
            Step::Start { final_one } => self.begin_checkpoint(final_one, ctx),
            Step::Finish => self.finish_shutdown(),
        }
    }

    /// Leaves the group (dropping the client) and answers the shutdown.
    fn finish_shutdown(&mut self) {
        if matches!(self.lifecycle, Lifecycle::Running(_)) {
            log::info!("Final checkpoint written; the consumer is closing.");
        }
        self.lifecycle = Lifecycle::Stopped;
        self.env.status.set_assigned(0);
        self.env.status.finish();
        if let Some(reply) = self.shutdown.take() {
            let _ = reply.send(());
        }
    }
}

impl Actor for ConsumerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.shutdown.is_some() {
            // Asked to stop while restarting: everything uncommitted was
            // rolled back, so the last committed checkpoint is the final one.
            return self.finish_shutdown();
        }
        ctx.run_interval(self.env.cfg.checkpoint_interval, |act, ctx| {
            if let Some(inc) = act.running() {
                let step = inc.phase.due();
                act.advance(step, ctx);
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
        // Anything in flight belongs to the old incarnation: fence it off,
        // then drop the incarnation (client, window actors, pending work).
        self.fence.bump();
        if let Lifecycle::Running(_) = self.lifecycle {
            self.lifecycle = Lifecycle::Down;
        }
        self.env.status.set_assigned(0);
        self.env.metrics.window_actors.set(0);
        self.env.metrics.uncommitted_events.set(0);
        self.start_delay = self.backoff.next_delay();
    }
}

impl Handler<Poll> for ConsumerActor {
    type Result = ();

    fn handle(&mut self, _: Poll, ctx: &mut Context<Self>) {
        let env = &self.env;
        let Lifecycle::Running(inc) = &mut self.lifecycle else {
            return;
        };
        inc.paused_poll = None;
        if inc.phase.shutting_down() {
            return;
        }
        let recipient = ctx.address().recipient();
        match catch(|| inc.release_held(env, &recipient)) {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return self.schedule_poll(false, ctx),
            Ok(Err(e)) => return self.fail(ActorKind::Consumer, e.into(), ctx),
            Err(reason) => {
                return self.fail(ActorKind::Consumer, ConsumerError::Panicked(reason), ctx)
            }
        }
        if inc.pending.uncommitted >= env.cfg.max_uncommitted_events
            || inc.batches.backlog() >= WINDOW_BACKLOG
        {
            return self.schedule_poll(false, ctx);
        }
        match catch(|| inc.poll_batch(env, &recipient)) {
            Ok(Ok(full)) => self.schedule_poll(full, ctx),
            Ok(Err(ConsumerError::Read(e))) => self.halt(format!(
                "the pipeline is halted: {e}; every line before it that was committed stays committed"
            )),
            Ok(Err(e)) => self.fail(ActorKind::Consumer, e, ctx),
            Err(reason) => self.fail(ActorKind::Consumer, ConsumerError::Panicked(reason), ctx),
        }
    }
}

impl Handler<Claim> for ConsumerActor {
    type Result = ();

    fn handle(&mut self, _: Claim, ctx: &mut Context<Self>) {
        self.claim(ctx);
    }
}

impl Handler<WindowFailed> for ConsumerActor {
    type Result = ();

    fn handle(&mut self, msg: WindowFailed, ctx: &mut Context<Self>) {
        let current = self.running().is_some_and(|inc| inc.epoch == msg.epoch);
        if current {
            let error = ConsumerError::WindowPanicked {
                stream_id: msg.stream_id,
                reason: msg.reason,
            };
            self.fail(ActorKind::Window, error, ctx);
        }
    }
}

impl Handler<Shutdown> for ConsumerActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.shutdown = Some(tx);
        log::info!("Shutting down: writing a final checkpoint.");
        match self.running() {
            Some(inc) => {
                let step = inc.phase.shutdown();
                self.advance(step, ctx);
            }
            // Nothing uncommitted exists outside a running incarnation.
            None => self.finish_shutdown(),
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
