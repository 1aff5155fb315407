//! The rdkafka consumer context: on every partition assignment it restores
//! offsets and stream snapshots from Postgres *before* assigning, so the
//! consumer never reads a message from a position the database does not
//! describe. Runs inside `poll`, on the consumer actor's thread.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset};

use super::RestoreError;
use crate::checkpoint::{Fence, Restored};
use crate::config::OffsetReset;
use crate::pipeline::PipelineStatus;
use crate::store::{self, Pool};

/// How long an assignment keeps retrying an unreachable database before
/// the consumer gives up and restarts (with backoff).
const RESTORE_PATIENCE: Duration = Duration::from_secs(20);

/// Where a partition starts: its stored next offset, or the reset policy's
/// end of the log when nothing is stored.
pub(super) fn start_offset(stored: Option<i64>, reset: OffsetReset) -> Offset {
    match (stored, reset) {
        (Some(next), _) => Offset::Offset(next),
        (None, OffsetReset::Earliest) => Offset::Beginning,
        (None, OffsetReset::Latest) => Offset::End,
    }
}

/// What happened to the assignment during a `poll`.
#[derive(Debug)]
pub enum AssignmentEvent {
    /// Partitions assigned, positioned at their restored offsets.
    Assigned {
        /// The epoch started by this assignment.
        epoch: u64,
        /// Assigned partitions.
        partitions: Vec<i32>,
        /// Offsets and open streams read from Postgres.
        restored: Restored,
    },
    /// Every partition was revoked.
    Revoked,
    /// The assignment could not be restored; the consumer must restart.
    Failed(RestoreError),
}

/// The consumer's rdkafka context.
pub struct PipelineContext {
    pool: Pool,
    fence: Arc<Fence>,
    group_id: String,
    topic: String,
    offset_reset: OffsetReset,
    events: Mutex<VecDeque<AssignmentEvent>>,
    high_watermarks: Mutex<BTreeMap<i32, i64>>,
    status: Arc<PipelineStatus>,
    owner: String,
}

impl PipelineContext {
    /// A context restoring `topic`'s partitions for `group_id` from `pool`.
    pub fn new(
        pool: Pool,
        fence: Arc<Fence>,
        group_id: String,
        topic: String,
        offset_reset: OffsetReset,
        status: Arc<PipelineStatus>,
        owner: String,
    ) -> Self {
        PipelineContext {
            status,
            owner,
            pool,
            fence,
            group_id,
            topic,
            offset_reset,
            events: Mutex::new(VecDeque::new()),
            high_watermarks: Mutex::new(BTreeMap::new()),
        }
    }

    /// Takes the assignment events that happened since the last call.
    pub fn take_events(&self) -> Vec<AssignmentEvent> {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.drain(..).collect()
    }

    /// The latest known end offset of each partition.
    pub fn high_watermarks(&self) -> BTreeMap<i32, i64> {
        self.high_watermarks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn push(&self, event: AssignmentEvent) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(event);
    }

    /// Reads offsets and open streams, retrying while the database is down.
    /// Runs without the fence lock: the epoch was bumped before, so no
    /// checkpoint of an older one can commit meanwhile.
    fn restore(&self, partitions: &[i32]) -> Result<Restored, store::StoreError> {
        let deadline = Instant::now() + RESTORE_PATIENCE;
        let mut delay = Duration::from_millis(100);
        loop {
            let attempt = self
                .pool
                .get()
                .map_err(store::StoreError::from)
                .and_then(|mut conn| {
                    store::load_assignment(
                        &mut conn,
                        &self.group_id,
                        &self.topic,
                        partitions,
                        &self.owner,
                    )
                });
            match attempt {
                Ok(restored) => return Ok(restored),
                Err(e) if Instant::now() + delay < deadline => {
                    log::warn!("Cannot restore partitions {partitions:?} yet ({e}); retrying in {delay:?}.");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let partitions: Vec<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        // A new epoch first (the bump waits for a commit in progress): no
        // checkpoint of the old epoch commits after the read below.
        let epoch = self.fence.bump();
        let restored = match self.restore(&partitions) {
            Ok(restored) => restored,
            Err(e) => return self.push(AssignmentEvent::Failed(e.into())),
        };
        for p in &partitions {
            let offset = start_offset(restored.offsets.get(p).copied(), self.offset_reset);
            if let Err(e) = tpl.set_partition_offset(&self.topic, *p, offset) {
                return self.push(AssignmentEvent::Failed(e.into()));
            }
        }
        if let Err(e) = consumer.assign(tpl) {
            return self.push(AssignmentEvent::Failed(e.into()));
        }
        log::info!(
            "Assigned partitions {partitions:?} of {} at stored offsets {:?} with {} streams holding open windows.",
            self.topic,
            restored.offsets,
            restored.streams.len()
        );
        self.push(AssignmentEvent::Assigned {
            epoch,
            partitions,
            restored,
        });
    }
}

impl ClientContext for PipelineContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            // End of partition is how catching up is detected, not trouble.
            Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) => {
                log::trace!("librdkafka: {reason}");
            }
            _ => log::warn!("Kafka client error: {error} ({reason})."),
        }
    }

    fn stats(&self, statistics: Statistics) {
        // Is any real (configured or learned, not internal) broker up?
        let up = statistics
            .brokers
            .values()
            .filter(|b| b.source == "configured" || b.source == "learned")
            .any(|b| b.state == "UP");
        self.status.set_broker_up(up);
        if let Some(topic) = statistics.topics.get(&self.topic) {
            let mut high = self
                .high_watermarks
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for (id, p) in &topic.partitions {
                if *id >= 0 && p.hi_offset >= 0 {
                    high.insert(*id, p.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for PipelineContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Fence first: an in-flight checkpoint of these partitions must not commit.
                self.fence.bump();
                if let Err(e) = consumer.unassign() {
                    log::warn!("Unassigning revoked partitions failed: {e}.");
                }
                self.push(AssignmentEvent::Revoked);
            }
            other => {
                self.push(AssignmentEvent::Failed(RestoreError::Rebalance(format!(
                    "{other:?}"
                ))));
            }
        }
    }
}
