//! Typed pipeline settings, validated by the binary before start-up.

use std::path::PathBuf;
use std::time::Duration;

use chrono::TimeDelta;

use crate::supervise::ActorKind;

/// Where to start a partition that has no stored offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// From the first message still in the log.
    Earliest,
    /// From the next message produced.
    Latest,
}

/// How the consumer gets its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignmentMode {
    /// Take every partition of the topic without joining a consumer group
    /// (a single instance; `partition_owners` leases fence any other).
    /// Restarts resume at once on any broker.
    SelfAssign,
    /// Join the consumer group and let the broker split the partitions
    /// between instances (scale-out).
    Group,
}

/// Where the events come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The Kafka topic, consumed without end.
    Kafka,
    /// JSON-lines files (plain or `.gz`), read once in this order as one
    /// log: partition 0 of the source named by `topic`, whose offset
    /// encodes the file's index and line (see `crate::lines`).
    /// There is no key to check, and an event time is bounded by the
    /// wall clock when its line is read. At the end of the last file every
    /// window is finalized and the pipeline stops.
    Files(Vec<PathBuf>),
}

/// Settings of the consumer, window and writer actors.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Where the events come from.
    pub source: Source,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The events topic (for a file source, the name its position and
    /// streams are stored under).
    pub topic: String,
    /// Consumer group; also the key of the stored offsets and snapshots.
    pub group_id: String,
    /// How partitions are assigned.
    pub assignment: AssignmentMode,
    /// Stable name of this instance across restarts (host and HTTP port by
    /// default): a restarted instance takes its own partitions back at once.
    pub instance_id: String,
    /// How long a self-assigned instance's claim on the partitions lasts
    /// without a checkpoint refreshing it; another instance waits that long.
    pub owner_lease: Duration,
    /// Static group membership (`group.instance.id`), where the broker honours it.
    pub group_instance_id: Option<String>,
    /// How far an event time may lie ahead of its message timestamp.
    pub max_future_skew: TimeDelta,
    /// How far behind a stream's latest event time a window stays open.
    pub allowed_lateness: Duration,
    /// Wall time without events after which a caught-up stream's watermark
    /// follows the wall clock.
    pub idle_finalize: Duration,
    /// Time between checkpoints.
    pub checkpoint_interval: Duration,
    /// Events handed to window actors since the last checkpoint that trigger
    /// an early checkpoint.
    pub checkpoint_events: u64,
    /// Uncommitted events at which consumption pauses until a commit.
    pub max_uncommitted_events: u64,
    /// Start of partitions without a stored offset.
    pub offset_reset: OffsetReset,
    /// Test-only fault injection; `None` in production.
    pub faults: Option<FaultPlan>,
}

impl PipelineConfig {
    /// Defaults that work with the local stack.
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        PipelineConfig {
            source: Source::Kafka,
            brokers: brokers.into(),
            topic: topic.into(),
            group_id: "streamstats".into(),
            assignment: AssignmentMode::SelfAssign,
            instance_id: "streamstats".into(),
            owner_lease: Duration::from_secs(10),
            group_instance_id: None,
            max_future_skew: crate::event::DEFAULT_MAX_FUTURE_SKEW,
            allowed_lateness: Duration::from_secs(600),
            idle_finalize: Duration::from_secs(30),
            checkpoint_interval: Duration::from_secs(1),
            checkpoint_events: 50_000,
            max_uncommitted_events: 200_000,
            offset_reset: OffsetReset::Earliest,
            faults: None,
        }
    }
}

/// Which actor panics, once, on which of its messages (counted from 1 over
/// the whole process, across restarts). Only set by an explicit flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultPlan {
    /// The actor kind that panics: `consumer`, `window` or `writer`.
    pub actor: ActorKind,
    /// The message number at which it panics.
    pub at_message: u64,
}

impl std::str::FromStr for FaultPlan {
    type Err = String;

    /// Parses `actor:N`, e.g. `window:120`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (actor, n) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not actor:N (e.g. window:120)"))?;
        let actor: ActorKind = actor.parse()?;
        let at_message = n
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{n:?} is not a positive message number"))?;
        Ok(FaultPlan { actor, at_message })
    }
}
