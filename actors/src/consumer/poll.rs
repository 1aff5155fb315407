//! The poll loop: one batch from librdkafka, parsed, dead-lettered or
//! grouped per stream and handed to the window actors; assignment changes
//! observed during the poll are applied in log order.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::Message as _;

use super::incarnation::Incarnation;
use super::{
    AssignmentEvent, ConsumerActor, ConsumerError, Env, Lifecycle, Poll, IDLE_POLL, MAX_BATCH,
};
use crate::checkpoint::DeadLetter;
use crate::event::{Event, RejectReason};
use crate::messages::{Envelope, WindowFailed};
use crate::supervise::ActorKind;

impl Incarnation {
    /// Polls one batch. `Ok(true)` when the batch was full (poll again now).
    pub(super) fn poll_batch(
        &mut self,
        env: &Env,
        on_failure: &Recipient<WindowFailed>,
    ) -> Result<bool, ConsumerError> {
        let client = self.client.clone();
        let mut groups: HashMap<String, Vec<Envelope>> = HashMap::new();
        let mut consumed: u64 = 0;
        let mut rejected: BTreeMap<RejectReason, u64> = BTreeMap::new();
        let mut full = false;
        for n in 0..=MAX_BATCH {
            if n == MAX_BATCH {
                full = true;
                break;
            }
            let polled = client.poll(Duration::ZERO);
            for event in client.context().take_events() {
                match event {
                    AssignmentEvent::Failed(error) => return Err(error.into()),
                    AssignmentEvent::Revoked => {
                        groups.clear();
                        self.revoke_all(env);
                    }
                    AssignmentEvent::Assigned {
                        epoch,
                        partitions,
                        restored,
                    } => {
                        self.dispatch(env, on_failure, std::mem::take(&mut groups))?;
                        self.restore(env, on_failure, epoch, &partitions, restored)?;
                    }
                }
            }
            let msg = match polled {
                None => break,
                Some(Ok(msg)) => msg,
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    if let Some(pos) = self.partitions.get_mut(&p) {
                        pos.at_eof = true;
                    }
                    continue;
                }
                Some(Err(e)) => {
                    log::warn!("Kafka consumer error: {e}.");
                    break;
                }
            };
            let partition = msg.partition();
            let offset = msg.offset();
            let Some(pos) = self.partitions.get_mut(&partition) else {
                // Prefetched before a revoke: not ours to count.
                continue;
            };
            if pos.next_offset.is_some_and(|next| offset < next) {
                // Prefetched before a seek: already counted.
                continue;
            }
            env.faults.tick(ActorKind::Consumer, 1);
            consumed += 1;
            pos.next_offset = Some(offset + 1);
            pos.at_eof = false;
            let payload = msg.payload().unwrap_or_default();
            let key = msg.key();
            let log_time = msg
                .timestamp()
                .to_millis()
                .and_then(DateTime::<Utc>::from_timestamp_millis);
            match Event::from_message(key, payload, log_time, env.cfg.max_future_skew) {
                Ok(event) => groups
                    .entry(event.stream_id.clone())
                    .or_default()
                    .push(Envelope {
                        event,
                        partition,
                        offset,
                        payload: payload.to_vec(),
                        key: key.map(<[u8]>::to_vec),
                    }),
                Err(rejection) => {
                    *rejected.entry(rejection.reason).or_default() += 1;
                    self.pending.dead_letters.push(DeadLetter {
                        partition,
                        offset,
                        reason: rejection.reason,
                        error: rejection.detail,
                        payload: payload.to_vec(),
                        key: key.map(<[u8]>::to_vec),
                    });
                }
            }
        }
        self.dispatch(env, on_failure, groups)?;
        env.metrics.events_consumed.inc_by(consumed);
        for (reason, n) in rejected {
            env.metrics
                .events_rejected
                .with_label_values(&[reason.as_str()])
                .inc_by(n);
        }
        self.pending.events_since_barrier += consumed;
        self.pending.uncommitted += consumed;
        env.metrics
            .uncommitted_events
            .set(i64::try_from(self.pending.uncommitted).unwrap_or(i64::MAX));
        Ok(full)
    }
}

impl ConsumerActor {
    pub(super) fn schedule_poll(&mut self, full: bool, ctx: &mut Context<Self>) {
        let cfg = &self.env.cfg;
        let Lifecycle::Running(inc) = &mut self.lifecycle else {
            return;
        };
        if inc.phase.shutting_down() {
            return;
        }
        let early = inc.pending.events_since_barrier >= cfg.checkpoint_events;
        let paused = inc.pending.uncommitted >= cfg.max_uncommitted_events;
        let step = if early {
            inc.phase.due()
        } else {
            crate::checkpoint::Step::Wait
        };
        self.env.metrics.consumer_paused.set(i64::from(paused));
        self.advance(step, ctx);
        if paused {
            ctx.notify_later(Poll, Duration::from_millis(50));
        } else if full {
            ctx.notify(Poll);
        } else {
            ctx.notify_later(Poll, IDLE_POLL);
        }
    }
}
