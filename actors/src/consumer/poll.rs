//! The poll loop: one batch from librdkafka, parsed, dead-lettered or
//! grouped per stream and handed to the window actors; assignment changes
//! observed during the poll are applied in log order.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::Message as _;

use super::{AssignmentEvent, ConsumerActor, Poll, PollOutcome, StreamEntry, IDLE_POLL, MAX_BATCH};
use crate::checkpoint::{DeadLetter, Snapshot};
use crate::config::FaultTarget;
use crate::event::{Event, RejectReason};
use crate::messages::{Envelope, EventBatch, WindowFailed};
use crate::window::StreamWindows;
use crate::window_actor::WindowActor;

impl ConsumerActor {
    pub(super) fn poll_once(&mut self) -> PollOutcome {
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
    pub(super) fn dispatch(&mut self, groups: HashMap<String, Vec<Envelope>>) {
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

    pub(super) fn spawn_window(&mut self, model: StreamWindows, partition: i32) {
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

    pub(super) fn self_recipient(&self) -> Recipient<WindowFailed> {
        self.self_addr
            .clone()
            .expect("started() records the address before anything is consumed")
            .recipient()
    }

    /// Takes over partitions at their restored offsets and snapshots.
    pub(super) fn restore(
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
    pub(super) fn revoke_all(&mut self) {
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

    pub(super) fn schedule_poll(&mut self, full: bool, ctx: &mut Context<Self>) {
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
