//! Every pipeline metric, defined and registered in one place (SPEC §7).
//! Names are `streamstats_<noun>_<unit>[_total]`; labels are low-cardinality
//! (reason, outcome, actor, partition). Actors update them per batch or per
//! checkpoint, never per event.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::event::RejectReason;
use crate::supervise::ActorKind;

/// How a checkpoint attempt ended: the `outcome` label of
/// `streamstats_checkpoints_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointOutcome {
    /// The transaction committed.
    Committed,
    /// The database was unavailable; the same checkpoint is retried.
    Failed,
    /// Another owner holds a partition; the incarnation starts over.
    Fenced,
    /// The database is up but refused the checkpoint's data: a defect.
    Refused,
}

impl CheckpointOutcome {
    /// Every outcome, for metric initialisation.
    pub const ALL: [CheckpointOutcome; 4] = [
        CheckpointOutcome::Committed,
        CheckpointOutcome::Failed,
        CheckpointOutcome::Fenced,
        CheckpointOutcome::Refused,
    ];

    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointOutcome::Committed => "committed",
            CheckpointOutcome::Failed => "failed",
            CheckpointOutcome::Fenced => "fenced",
            CheckpointOutcome::Refused => "refused",
        }
    }
}

/// The pipeline's metrics; cheap to clone (shared handles).
#[derive(Clone)]
pub struct Metrics {
    /// Messages read from Kafka, valid or not.
    pub events_consumed: IntCounter,
    /// Messages dead-lettered, by reason (late included).
    pub events_rejected: IntCounterVec,
    /// Events that arrived for an already final window.
    pub events_late: IntCounter,
    /// Checkpoint transactions by outcome.
    pub checkpoints: IntCounterVec,
    /// Duration of the checkpoint transaction.
    pub checkpoint_duration: Histogram,
    /// Seconds since the last committed checkpoint (refreshed at scrape).
    pub last_checkpoint_age: prometheus::Gauge,
    /// Messages between the consumer position and the partition end.
    pub consumer_lag: IntGaugeVec,
    /// Wall clock minus the most advanced stream watermark, in seconds.
    pub watermark_lag: IntGauge,
    /// Windows held open in memory.
    pub open_windows: IntGauge,
    /// Windows that became final.
    pub windows_finalized: IntCounter,
    /// Actor restarts, by actor kind.
    pub actor_restarts: IntCounterVec,
    /// Partitions this process consumes now.
    pub partitions_assigned: IntGauge,
    /// Live per-stream window actors.
    pub window_actors: IntGauge,
    /// Streams looked up in Postgres on their first event in memory.
    pub streams_restored: IntCounter,
    /// Window actors stopped because their stream held nothing open.
    pub streams_evicted: IntCounter,
    /// Rows written by committed checkpoints (window, state and increment rows).
    pub checkpoint_rows: Histogram,
    /// Events handed to window actors but not yet in a committed checkpoint.
    pub uncommitted_events: IntGauge,
    /// 1 while consumption is paused: uncommitted work hit its bound, or a
    /// batch waits for its streams' restore from Postgres.
    pub consumer_paused: IntGauge,
    /// Retention passes, by outcome (`completed`, `failed`).
    pub retention_passes: IntCounterVec,
    /// Rows deleted by retention, by table.
    pub retention_rows_removed: IntCounterVec,
    /// Age of the oldest row kept, by table (0 when the table is empty).
    pub retention_oldest_row_age: GaugeVec,
    last_checkpoint_unix_ms: Arc<AtomicI64>,
}

fn must<T>(result: prometheus::Result<T>) -> T {
    result.expect("metric definitions are static and valid")
}

impl Metrics {
    /// Creates every metric and registers it in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let m = Metrics {
            events_consumed: must(IntCounter::new(
                "streamstats_events_consumed_total",
                "Messages read from Kafka, valid or not.",
            )),
            events_rejected: must(IntCounterVec::new(
                Opts::new(
                    "streamstats_events_rejected_total",
                    "Messages written to dead_letters, by reason.",
                ),
                &["reason"],
            )),
            events_late: must(IntCounter::new(
                "streamstats_events_late_total",
                "Events for a window that was already final.",
            )),
            checkpoints: must(IntCounterVec::new(
                Opts::new(
                    "streamstats_checkpoints_total",
                    "Checkpoint transactions by outcome.",
                ),
                &["outcome"],
            )),
            checkpoint_duration: must(Histogram::with_opts(
                HistogramOpts::new(
                    "streamstats_checkpoint_duration_seconds",
                    "Duration of the checkpoint transaction.",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            )),
            last_checkpoint_age: must(prometheus::Gauge::new(
                "streamstats_last_checkpoint_age_seconds",
                "Seconds since the last committed checkpoint.",
            )),
            consumer_lag: must(IntGaugeVec::new(
                Opts::new(
                    "streamstats_consumer_lag_messages",
                    "Messages between the consumer position and the end of the partition.",
                ),
                &["partition"],
            )),
            watermark_lag: must(IntGauge::new(
                "streamstats_watermark_lag_seconds",
                "Wall clock minus the most advanced stream watermark.",
            )),
            open_windows: must(IntGauge::new(
                "streamstats_open_windows",
                "Windows held open in memory.",
            )),
            windows_finalized: must(IntCounter::new(
                "streamstats_windows_finalized_total",
                "Windows that became final.",
            )),
            actor_restarts: must(IntCounterVec::new(
                Opts::new(
                    "streamstats_actor_restarts_total",
                    "Actor restarts by actor kind.",
                ),
                &["actor"],
            )),
            partitions_assigned: must(IntGauge::new(
                "streamstats_partitions_assigned",
                "Partitions this process consumes now.",
            )),
            window_actors: must(IntGauge::new(
                "streamstats_window_actors",
                "Live per-stream window actors.",
            )),
            streams_restored: must(IntCounter::new(
                "streamstats_streams_restored_total",
                "Streams looked up in Postgres when their first event found them out of memory.",
            )),
            streams_evicted: must(IntCounter::new(
                "streamstats_streams_evicted_total",
                "Window actors stopped because their stream held no open window.",
            )),
            checkpoint_rows: must(Histogram::with_opts(
                HistogramOpts::new(
                    "streamstats_checkpoint_rows",
                    "Rows written by one checkpoint transaction (results, states, increments, dead letters).",
                )
                .buckets(vec![
                    1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0,
                ]),
            )),
            uncommitted_events: must(IntGauge::new(
                "streamstats_uncommitted_events",
                "Events consumed but not yet in a committed checkpoint.",
            )),
            consumer_paused: must(IntGauge::new(
                "streamstats_consumer_paused",
                "1 while consumption waits for a checkpoint to commit or a restore from Postgres.",
            )),
            retention_passes: must(IntCounterVec::new(
                Opts::new(
                    "streamstats_retention_passes_total",
                    "Retention passes over both tables, by outcome.",
                ),
                &["outcome"],
            )),
            retention_rows_removed: must(IntCounterVec::new(
                Opts::new(
                    "streamstats_retention_rows_removed_total",
                    "Rows deleted by retention, by table.",
                ),
                &["table"],
            )),
            retention_oldest_row_age: must(GaugeVec::new(
                Opts::new(
                    "streamstats_retention_oldest_row_age_seconds",
                    "Age of the oldest row kept, by table (window start or arrival time).",
                ),
                &["table"],
            )),
            last_checkpoint_unix_ms: Arc::new(AtomicI64::new(0)),
        };
        registry.register(Box::new(m.events_consumed.clone()))?;
        registry.register(Box::new(m.events_rejected.clone()))?;
        registry.register(Box::new(m.events_late.clone()))?;
        registry.register(Box::new(m.checkpoints.clone()))?;
        registry.register(Box::new(m.checkpoint_duration.clone()))?;
        registry.register(Box::new(m.last_checkpoint_age.clone()))?;
        registry.register(Box::new(m.consumer_lag.clone()))?;
        registry.register(Box::new(m.watermark_lag.clone()))?;
        registry.register(Box::new(m.open_windows.clone()))?;
        registry.register(Box::new(m.windows_finalized.clone()))?;
        registry.register(Box::new(m.actor_restarts.clone()))?;
        registry.register(Box::new(m.partitions_assigned.clone()))?;
        registry.register(Box::new(m.window_actors.clone()))?;
        registry.register(Box::new(m.streams_restored.clone()))?;
        registry.register(Box::new(m.streams_evicted.clone()))?;
        registry.register(Box::new(m.checkpoint_rows.clone()))?;
        registry.register(Box::new(m.uncommitted_events.clone()))?;
        registry.register(Box::new(m.consumer_paused.clone()))?;
        registry.register(Box::new(m.retention_passes.clone()))?;
        registry.register(Box::new(m.retention_rows_removed.clone()))?;
        registry.register(Box::new(m.retention_oldest_row_age.clone()))?;
        // Every label value exists from the start, so dashboards show zeros.
        for outcome in ["completed", "failed"] {
            m.retention_passes.with_label_values(&[outcome]);
        }
        for reason in RejectReason::ALL {
            m.events_rejected.with_label_values(&[reason.as_str()]);
        }
        for outcome in CheckpointOutcome::ALL {
            m.checkpoints.with_label_values(&[outcome.as_str()]);
        }
        for actor in ActorKind::ALL {
            m.actor_restarts.with_label_values(&[actor.as_str()]);
        }
        for table in crate::store::retention::TABLES {
            m.retention_rows_removed.with_label_values(&[table]);
            m.retention_oldest_row_age.with_label_values(&[table]);
        }
        Ok(m)
    }

    /// Metrics on a private registry, for tests and tools.
    pub fn unregistered() -> Metrics {
        must(Metrics::register(&Registry::new()))
    }

    /// Counts one checkpoint attempt by how it ended.
    pub fn checkpoint_outcome(&self, outcome: CheckpointOutcome) {
        self.checkpoints
            .with_label_values(&[outcome.as_str()])
            .inc();
    }

    /// Counts one restart of an actor of `kind`.
    pub fn actor_restarted(&self, kind: ActorKind) {
        self.actor_restarts
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    /// Records a committed checkpoint at `unix_ms`.
    pub fn checkpoint_committed(&self, unix_ms: i64) {
        self.last_checkpoint_unix_ms
            .store(unix_ms, Ordering::Relaxed);
    }

    /// Milliseconds since the epoch of the last committed checkpoint (0: none).
    pub fn last_checkpoint_unix_ms(&self) -> i64 {
        self.last_checkpoint_unix_ms.load(Ordering::Relaxed)
    }

    /// Checkpoints committed so far: with [`Metrics::last_checkpoint_unix_ms`]
    /// it versions whatever is read from the result tables.
    pub fn committed_checkpoints(&self) -> u64 {
        self.checkpoints.with_label_values(&["committed"]).get()
    }

    /// Refreshes the age gauges; called at scrape time.
    pub fn refresh(&self, now_unix_ms: i64) {
        let last = self.last_checkpoint_unix_ms();
        let age = if last == 0 {
            0.0
        } else {
            (now_unix_ms - last).max(0) as f64 / 1000.0
        };
        self.last_checkpoint_age.set(age);
    }
}
