//! Self-assignment: the consumer takes every partition of the topic
//! without joining a consumer group. The claim is a lease in
//! `partition_owners`, refreshed by every checkpoint: a restarted instance
//! takes its own partitions back at once, while a second instance stands
//! by until the first stops refreshing its claim, and a paused one that
//! lost its claim is fenced at its next checkpoint.

use std::time::Duration;

use actix::prelude::*;
use chrono::TimeDelta;
use rdkafka::consumer::Consumer;
use rdkafka::TopicPartitionList;

use super::context::start_offset;
use super::incarnation::{Incarnation, Input};
use super::{Claim, ConsumerActor, Env, Lifecycle, Poll, RestoreError};
use crate::checkpoint::Fence;
use crate::lines::LinePosition;
use crate::messages::WindowFailed;
use crate::store::{self, Pool};

/// How long a metadata request may block the consumer.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before trying again when the claim could not be made.
const CLAIM_RETRY: Duration = Duration::from_millis(500);

/// What one claim attempt found.
enum Attempt {
    /// Every partition is ours and assigned.
    Assigned(usize),
    /// The topic does not exist yet (or has no partitions).
    NoTopic,
    /// Another live instance holds the partitions.
    Held { owner: String, age: TimeDelta },
}

impl ConsumerActor {
    /// Tries to claim every partition; on anything but success, tries again
    /// later (stand-by, missing topic, Postgres or the broker away).
    pub(super) fn claim(&mut self, ctx: &mut Context<Self>) {
        let recipient = ctx.address().recipient();
        let Lifecycle::Running(inc) = &mut self.lifecycle else {
            return;
        };
        if inc.claimed || inc.phase.shutting_down() {
            return;
        }
        let attempt = attempt(&self.env, &self.pool, &self.fence, inc, &recipient);
        let cfg = &self.env.cfg;
        match attempt {
            Ok(Attempt::Assigned(n)) => {
                inc.claimed = true;
                if matches!(inc.input, Input::Kafka(_)) {
                    log::info!(
                        "Took all {n} partitions of {} at their stored offsets (self-assignment).",
                        cfg.topic
                    );
                }
                ctx.notify(Poll);
                return;
            }
            Ok(Attempt::NoTopic) => {
                if !std::mem::replace(&mut inc.claim_reported, true) {
                    log::info!("Waiting for topic {} to exist.", cfg.topic);
                }
            }
            Ok(Attempt::Held { owner, age }) => {
                if !std::mem::replace(&mut inc.claim_reported, true) {
                    log::info!(
                        "Standing by: {owner} holds the partitions of {} (refreshed {:.1}s ago); taking over if it stops for {:?}.",
                        cfg.topic,
                        age.num_milliseconds().max(0) as f64 / 1000.0,
                        cfg.owner_lease
                    );
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut inc.claim_reported, true) {
                    log::warn!(
                        "Cannot claim the partitions of {} yet ({e}); retrying.",
                        cfg.topic
                    );
                }
            }
        }
        ctx.notify_later(Claim, CLAIM_RETRY);
    }
}

fn attempt(
    env: &Env,
    pool: &Pool,
    fence: &Fence,
    inc: &mut Incarnation,
    on_failure: &Recipient<WindowFailed>,
) -> Result<Attempt, RestoreError> {
    let cfg = &env.cfg;
    let partitions: Vec<i32> = match &inc.input {
        Input::Kafka(client) => client
            .fetch_metadata(Some(&cfg.topic), METADATA_TIMEOUT)?
            .topics()
            .iter()
            .filter(|t| t.name() == cfg.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect(),
        // A file source is one partition.
        Input::Files(_) => vec![0],
    };
    if partitions.is_empty() {
        return Ok(Attempt::NoTopic);
    }
    // A new epoch before reading: from here on no checkpoint of an older
    // one commits (the bump waits for a commit in progress).
    let epoch = fence.bump();
    let lease = TimeDelta::from_std(cfg.owner_lease).unwrap_or(TimeDelta::MAX);
    let mut conn = pool.get().map_err(store::StoreError::from)?;
    let restored = match store::claim_leased(
        &mut conn,
        &cfg.group_id,
        &cfg.topic,
        &partitions,
        &inc.owner,
        lease,
    )? {
        store::Claim::Held { owner, age } => return Ok(Attempt::Held { owner, age }),
        store::Claim::Claimed(restored) => restored,
    };
    match &mut inc.input {
        Input::Kafka(client) => {
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                let offset = start_offset(restored.offsets.get(p).copied(), cfg.offset_reset);
                tpl.add_partition_offset(&cfg.topic, *p, offset)?;
            }
            client.assign(&tpl)?;
        }
        Input::Files(files) => {
            let next = restored
                .offsets
                .get(&0)
                .and_then(|offset| LinePosition::from_offset(*offset))
                .unwrap_or(LinePosition::START);
            log::info!(
                "Resuming {} at line {} of file {}.",
                cfg.topic,
                next.line,
                next.file + 1
            );
            files.start(next, cfg.max_future_skew);
        }
    }
    let n = partitions.len();
    inc.restore(env, on_failure, epoch, &partitions, restored)?;
    Ok(Attempt::Assigned(n))
}
