//! One incarnation of the consumer: everything a restart drops at once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use rdkafka::consumer::BaseConsumer;

use super::batch::BatchPool;
use super::file_source::FileInput;
use super::{Env, PipelineContext, RestoreError, RESTORE_RETRY};
use crate::checkpoint::{DeadLetter, Phase, Restored};
use crate::hash::FastMap;
use crate::messages::{EventBatch, PollBatch, WindowFailed};
use crate::store;
use crate::window::StreamWindows;
use crate::window_actor::WindowActor;

/// A stream the consumer routes to.
pub(super) struct StreamEntry {
    pub addr: Addr<WindowActor>,
    /// The partition its events come from.
    pub partition: i32,
    /// Received events since the last barrier.
    pub touched: bool,
    /// When its last batch was handed over.
    pub last_event: Instant,
    /// The idle watermark it was last advanced to.
    pub idle_to: Option<DateTime<Utc>>,
    pub open_windows: usize,
    pub watermark: Option<DateTime<Utc>>,
    /// Its last barrier answer held no open window: evict after the commit.
    pub evict: bool,
}

/// Where one assigned partition is.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Position {
    /// Next offset to count (none until the first message or a stored one).
    pub next_offset: Option<i64>,
    /// The last poll reached the end of the partition.
    pub at_eof: bool,
}

/// Work done since the last committed checkpoint.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// Rejected messages not yet handed to a checkpoint.
    pub dead_letters: Vec<DeadLetter>,
    /// Events consumed since the last barrier.
    pub events_since_barrier: u64,
    /// Events consumed and not yet covered by a committed checkpoint.
    pub uncommitted: u64,
}

/// A polled batch not yet handed to the window actors because some of its
/// streams could not be restored from Postgres (it is down). Held batches
/// go out first, in order, before any other batch or barrier.
pub(super) struct Held {
    /// The batch's events per stream.
    groups: FastMap<String, Vec<u32>>,
    /// The batch.
    batch: Arc<PollBatch>,
}

/// Why a held batch's streams were not restored.
enum Restore {
    /// Postgres cannot be reached: the batch stays held and is retried.
    Unreachable(store::StoreError),
    /// Postgres answered with an error: retrying will not help.
    Failed(store::StoreError),
}

/// Where an incarnation reads its events.
pub(super) enum Input {
    /// The Kafka client.
    Kafka(Arc<BaseConsumer<PipelineContext>>),
    /// JSON-lines files, read once.
    Files(FileInput),
}

/// The consumer's state for one connection to its input.
pub(super) struct Incarnation {
    pub input: Input,
    /// Ownership token in `partition_owners`.
    pub owner: String,
    /// Assignment epoch (see `crate::checkpoint::Fence`); 0 before any.
    pub epoch: u64,
    /// Assigned partitions and their positions.
    pub partitions: BTreeMap<i32, Position>,
    pub streams: FastMap<String, StreamEntry>,
    pub pending: Pending,
    /// Lines a file source estimates it has left; `None` for Kafka.
    pub lines_left: Option<u64>,
    pub phase: Phase,
    /// Self-assignment: the partitions are claimed and assigned.
    pub claimed: bool,
    /// Why the claim waits was already logged.
    pub claim_reported: bool,
    /// Consecutive refusals of the checkpoint in flight.
    pub refusals: u32,
    pub last_kafka_commit: Option<Instant>,
    /// A failed offset copy to Kafka was already reported.
    pub kafka_commit_warned: bool,
    /// Poll batches lent to the window actors, for reuse.
    pub batches: BatchPool,
    /// The timed re-check of a paused read (too much uncommitted), which
    /// a commit replaces with an immediate poll.
    pub paused_poll: Option<SpawnHandle>,
    /// Batches waiting for their streams' restore; reading pauses while
    /// any is held, and no barrier is taken behind them.
    pub held: VecDeque<Held>,
    /// When a held batch's restore last failed for want of Postgres: no
    /// new attempt within [`RESTORE_RETRY`], each waiting at most that long
    /// for a new connection, and its recovery is still to report.
    pub restore_failed_at: Option<Instant>,
}

impl Incarnation {
    pub fn new(input: Input, owner: String) -> Self {
        Incarnation {
            input,
            owner,
            epoch: 0,
            partitions: BTreeMap::new(),
            streams: FastMap::default(),
            pending: Pending::default(),
            lines_left: None,
            phase: Phase::Idle,
            claimed: false,
            claim_reported: false,
            refusals: 0,
            last_kafka_commit: None,
            kafka_commit_warned: false,
            batches: BatchPool::default(),
            paused_poll: None,
            held: VecDeque::new(),
            restore_failed_at: None,
        }
    }

    /// Takes over partitions at their restored offsets, with their streams
    /// that hold open windows.
    pub fn restore(
        &mut self,
        env: &Env,
        on_failure: &Recipient<WindowFailed>,
        epoch: u64,
        partitions: &[i32],
        restored: Restored,
    ) -> Result<(), RestoreError> {
        self.epoch = epoch;
        for p in partitions {
            self.partitions.insert(
                *p,
                Position {
                    next_offset: restored.offsets.get(p).copied(),
                    at_eof: false,
                },
            );
        }
        for (partition, model) in restored.streams {
            self.spawn_window(env, on_failure, model, partition);
        }
        env.status.set_assigned(self.partitions.len());
        env.metrics
            .window_actors
            .set(i64::try_from(self.streams.len()).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Forgets every partition and all uncommitted work (after a revoke).
    pub fn revoke_all(&mut self, env: &Env) {
        if !self.partitions.is_empty() {
            log::info!(
                "Partitions {:?} revoked; uncommitted work dropped.",
                self.partitions.keys().collect::<Vec<_>>()
            );
        }
        // Results of checkpoints still in flight no longer match any epoch.
        self.epoch = 0;
        self.partitions.clear();
        self.streams.clear();
        self.held.clear();
        self.restore_failed_at = None;
        self.pending = Pending::default();
        env.status.set_assigned(0);
        env.metrics.window_actors.set(0);
        env.metrics.uncommitted_events.set(0);
    }

    /// Hands each stream its events, behind any batch still held. Streams
    /// not in memory are restored from Postgres first, all of the batch's
    /// in one read, or start empty. While Postgres cannot be reached the
    /// batch is held (see [`Held`]) instead of failing the incarnation.
    pub fn dispatch(
        &mut self,
        env: &Env,
        on_failure: &Recipient<WindowFailed>,
        groups: FastMap<String, Vec<u32>>,
        batch: &Arc<PollBatch>,
    ) -> Result<(), RestoreError> {
        if !groups.is_empty() {
            self.held.push_back(Held {
                groups,
                batch: batch.clone(),
            });
        }
        self.release_held(env, on_failure).map(|_| ())
    }

    /// Hands out held batches in order until one's restore cannot reach
    /// Postgres. `Ok(true)` when none is left; an error when Postgres
    /// answered and the restore failed anyway (the incarnation must fail).
    pub fn release_held(
        &mut self,
        env: &Env,
        on_failure: &Recipient<WindowFailed>,
    ) -> Result<bool, RestoreError> {
        if self.held.is_empty() {
            return Ok(true);
        }
        if self
            .restore_failed_at
            .is_some_and(|t| t.elapsed() < RESTORE_RETRY)
        {
            return Ok(false);
        }
        while let Some(held) = self.held.pop_front() {
            match self.restore_unknown(env, on_failure, &held) {
                Ok(()) => self.send(held.groups, &held.batch),
                Err(Restore::Unreachable(e)) => {
                    self.held.push_front(held);
                    if self.restore_failed_at.is_none() {
                        log::warn!("Cannot restore streams from Postgres ({e}); reading pauses until it answers.");
                        env.status
                            .set_error(Some(format!("cannot restore streams: {e}")));
                    }
                    self.restore_failed_at = Some(Instant::now());
                    return Ok(false);
                }
                Err(Restore::Failed(e)) => return Err(e.into()),
            }
        }
        if self.restore_failed_at.take().is_some() {
            log::info!("Postgres answered: the held events are handed over and reading resumes.");
            env.status.set_error(None);
        }
        env.metrics
            .window_actors
            .set(i64::try_from(self.streams.len()).unwrap_or(i64::MAX));
        Ok(true)
    }

    /// Spawns the window actors of `held`'s streams that are not in memory,
    /// restored from Postgres (or empty when it has nothing of them).
    fn restore_unknown(
        &mut self,
        env: &Env,
        on_failure: &Recipient<WindowFailed>,
        held: &Held,
    ) -> Result<(), Restore> {
        let unknown: Vec<String> = held
            .groups
            .keys()
            .filter(|s| !self.streams.contains_key(*s))
            .cloned()
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        // While Postgres is known to be away, a retry waits briefly for a
        // connection, so the consumer stays responsive (to a shutdown). A
        // server that hangs instead holds the attempt until it answers.
        let patience = match self.restore_failed_at {
            Some(_) => RESTORE_RETRY,
            None => env.pool.connection_timeout(),
        };
        let mut conn = env
            .pool
            .get_timeout(patience)
            .map_err(|e| Restore::Unreachable(e.into()))?;
        let loaded = match store::load_streams(&mut conn, &unknown) {
            Ok(loaded) => loaded,
            Err(e) if e.is_unreachable(&mut conn) => return Err(Restore::Unreachable(e)),
            Err(e) => return Err(Restore::Failed(e)),
        };
        let mut restored: FastMap<String, StreamWindows> = loaded
            .into_iter()
            .map(|(_, model)| (model.stream_id().to_owned(), model))
            .collect();
        env.metrics.streams_restored.inc_by(unknown.len() as u64);
        for stream_id in unknown {
            let model = restored
                .remove(&stream_id)
                .unwrap_or_else(|| StreamWindows::new(stream_id.clone()));
            if let Some(partition) = first_partition(&held.batch, held.groups.get(&stream_id)) {
                self.spawn_window(env, on_failure, model, partition);
            }
        }
        Ok(())
    }

    /// Enqueues each stream's events in its window actor.
    fn send(&mut self, groups: FastMap<String, Vec<u32>>, batch: &Arc<PollBatch>) {
        let now = Instant::now();
        for (stream_id, indices) in groups {
            if let Some(entry) = self.streams.get_mut(&stream_id) {
                entry.touched = true;
                entry.evict = false;
                entry.last_event = now;
                entry.addr.do_send(EventBatch {
                    batch: batch.clone(),
                    indices,
                });
            }
        }
    }

    /// Stops the window actors of streams whose last answer held no open
    /// window and that received nothing since: their state is committed,
    /// and their next event restores them from Postgres.
    pub fn evict_closed(&mut self, env: &Env) {
        let before = self.streams.len();
        self.streams.retain(|_, e| !e.evict || e.touched);
        let evicted = before - self.streams.len();
        if evicted > 0 {
            env.metrics.streams_evicted.inc_by(evicted as u64);
            env.metrics
                .window_actors
                .set(i64::try_from(self.streams.len()).unwrap_or(i64::MAX));
        }
    }

    fn spawn_window(
        &mut self,
        env: &Env,
        on_failure: &Recipient<WindowFailed>,
        model: StreamWindows,
        partition: i32,
    ) {
        let stream_id = model.stream_id().to_owned();
        let open_windows = model.open_windows();
        let watermark = model.watermark();
        let lateness = env.lateness;
        let epoch = self.epoch;
        let faults = env.faults.clone();
        let on_failure = on_failure.clone();
        let addr = WindowActor::start_in_arbiter(&env.window_arbiter, move |_| {
            WindowActor::new(model, partition, lateness, epoch, on_failure, faults)
        });
        self.streams.insert(
            stream_id,
            StreamEntry {
                addr,
                partition,
                touched: false,
                last_event: Instant::now(),
                idle_to: None,
                open_windows,
                watermark,
                evict: false,
            },
        );
    }

    /// True when a file source has read its last line.
    pub fn end_of_input(&self) -> bool {
        matches!(self.input, Input::Files(_)) && self.caught_up()
    }

    /// True when every assigned partition reached its end at the last poll.
    pub fn caught_up(&self) -> bool {
        !self.partitions.is_empty() && self.partitions.values().all(|p| p.at_eof)
    }

    /// The next offset of every partition that has one.
    pub fn next_offsets(&self) -> BTreeMap<i32, i64> {
        self.partitions
            .iter()
            .filter_map(|(p, pos)| pos.next_offset.map(|next| (*p, next)))
            .collect()
    }
}

/// The partition of a stream's first event in `batch`.
fn first_partition(batch: &PollBatch, indices: Option<&Vec<u32>>) -> Option<i32> {
    let first = *indices?.first()?;
    batch.events.get(first as usize).map(|e| e.partition)
}
