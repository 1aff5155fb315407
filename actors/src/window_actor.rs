//! WindowActor: one per stream, running the pure window model.
//!
//! Delivery: it applies the batches the consumer sends, in mailbox order,
//! and hands its changes over only at a checkpoint barrier, so everything
//! it reports is covered by the offsets of the same checkpoint; it refuses
//! a barrier that arrives after an event at or past the barrier's offset.
//! Its state is never trusted after a panic: the failure is reported and
//! the pipeline rolls back to the last committed checkpoint.

use actix::{Actor, ActorContext, Context, Handler, Recipient};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

use crate::checkpoint::{BarrierError, DeadLetter};
use crate::event::{Event, RejectReason};
use crate::messages::{Barrier, BarrierReply, EventBatch, WindowFailed};
use crate::supervise::{catch, ActorKind, Faults};
use crate::window::{minute_of, Applied, StreamWindows};

/// The actor owning one stream's [`StreamWindows`].
pub struct WindowActor {
    model: StreamWindows,
    partition: i32,
    allowed_lateness: TimeDelta,
    late: Vec<DeadLetter>,
    /// Highest offset applied (late events included) by this actor.
    applied_up_to: Option<i64>,
    epoch: u64,
    on_failure: Recipient<WindowFailed>,
    faults: Faults,
    failed: bool,
}

impl WindowActor {
    /// An actor continuing `model` for a stream of `partition`.
    pub fn new(
        model: StreamWindows,
        partition: i32,
        allowed_lateness: TimeDelta,
        epoch: u64,
        on_failure: Recipient<WindowFailed>,
        faults: Faults,
    ) -> Self {
        WindowActor {
            model,
            partition,
            allowed_lateness,
            late: Vec::new(),
            applied_up_to: None,
            epoch,
            on_failure,
            faults,
            failed: false,
        }
    }

    fn fail(&mut self, reason: String, ctx: &mut Context<Self>) {
        self.failed = true;
        self.on_failure.do_send(WindowFailed {
            stream_id: self.model.stream_id().to_owned(),
            epoch: self.epoch,
            reason,
        });
        ctx.stop();
    }

    /// Everything changed since the previous barrier, or why not.
    fn answer(&mut self, barrier: &Barrier) -> Result<BarrierReply, BarrierError> {
        let stream_id = || self.model.stream_id().to_owned();
        if self.failed {
            return Err(BarrierError::Failed {
                stream_id: stream_id(),
            });
        }
        if let (Some(applied), Some(next_offset)) = (self.applied_up_to, barrier.next_offset) {
            if applied >= next_offset {
                return Err(BarrierError::Overtaken {
                    stream_id: stream_id(),
                    partition: self.partition,
                    applied,
                    next_offset,
                });
            }
        }
        if let Some(wm) = barrier.idle_watermark {
            self.model.advance_watermark(wm);
        }
        if barrier.end_of_input {
            self.model.close_all();
        }
        let changes = self.model.take_changes();
        let finalized = changes.rows.iter().filter(|r| r.is_final).count() as u64;
        Ok(BarrierReply {
            partition: self.partition,
            changes,
            late: std::mem::take(&mut self.late),
            open_windows: self.model.open_windows(),
            watermark: self.model.watermark(),
            finalized,
        })
    }
}

impl Actor for WindowActor {
    type Context = Context<Self>;
}

/// The dead letter's sentence for a late event: its window and the
/// stream's watermark, in RFC 3339 (the event's own time is in the
/// payload beside it).
fn late_error(event: &Event, watermark: Option<DateTime<Utc>>) -> String {
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let watermark = watermark.map_or_else(|| "none".to_owned(), time);
    format!(
        "the window starting {} is final for stream {} (watermark {watermark})",
        time(minute_of(event.ts)),
        event.stream_id,
    )
}

impl Handler<EventBatch> for WindowActor {
    type Result = ();

    fn handle(&mut self, batch: EventBatch, ctx: &mut Context<Self>) {
        if self.failed {
            return;
        }
        let result = catch(|| {
            self.faults.tick(ActorKind::Window, 1);
            for env in batch.events() {
                self.applied_up_to = self.applied_up_to.max(Some(env.offset));
                if self.model.apply(&env.event, self.allowed_lateness) == Applied::Late {
                    self.late.push(DeadLetter {
                        partition: env.partition,
                        offset: env.offset,
                        reason: RejectReason::Late,
                        error: late_error(&env.event, self.model.watermark()),
                        payload: batch.batch.payload(&env.payload).to_vec(),
                        key: env.keyed.then(|| env.event.stream_id.as_bytes().to_vec()),
                    });
                }
            }
        });
        if let Err(reason) = result {
            self.fail(reason, ctx);
        }
    }
}

impl Handler<Barrier> for WindowActor {
    type Result = ();

    fn handle(&mut self, barrier: Barrier, ctx: &mut Context<Self>) {
        let answer = match catch(|| self.answer(&barrier)) {
            Ok(answer) => answer,
            Err(reason) => {
                let stream_id = self.model.stream_id().to_owned();
                self.fail(reason.clone(), ctx);
                Err(BarrierError::Panicked { stream_id, reason })
            }
        };
        // The consumer may have moved on (restart); nobody to tell then.
        let _ = barrier
            .reply
            .send((self.model.stream_id().to_owned(), answer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Envelope, PollBatch};

    struct Sink;
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<WindowFailed> for Sink {
        type Result = ();
        fn handle(&mut self, _: WindowFailed, _: &mut Context<Self>) {}
    }

    fn envelope(offset: i64) -> Envelope {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("valid")
            .with_timezone(&Utc);
        let payload = br#"{"event_id":"e","ts":"2025-12-31T23:59:00Z","event_type":"stream_start","stream_id":"s"}"#;
        Envelope {
            event: Event::parse(payload, now).expect("valid event"),
            partition: 0,
            offset,
            payload: 0..payload.len(),
            keyed: true,
        }
    }

    fn batch(events: Vec<Envelope>) -> EventBatch {
        let payload = br#"{"event_id":"e","ts":"2025-12-31T23:59:00Z","event_type":"stream_start","stream_id":"s"}"#;
        let indices = (0..events.len() as u32).collect();
        EventBatch {
            batch: std::sync::Arc::new(PollBatch {
                events,
                payloads: payload.to_vec(),
            }),
            indices,
        }
    }

    async fn barrier(
        addr: &actix::Addr<WindowActor>,
        next_offset: i64,
    ) -> Result<BarrierReply, BarrierError> {
        let (reply, mut answer) = tokio::sync::mpsc::unbounded_channel();
        addr.do_send(Barrier {
            idle_watermark: None,
            end_of_input: false,
            next_offset: Some(next_offset),
            reply,
        });
        let (stream, answer) = answer.recv().await.expect("the window actor answers");
        assert_eq!(stream, "s");
        answer
    }

    #[actix_rt::test]
    async fn a_barrier_overtaken_by_a_later_offset_is_refused() {
        let sink = Sink.start().recipient();
        let model = StreamWindows::new("s");
        let addr =
            WindowActor::new(model, 0, TimeDelta::minutes(10), 1, sink, Faults::default()).start();
        addr.do_send(batch(vec![envelope(5), envelope(6)]));
        let reply = barrier(&addr, 7)
            .await
            .expect("offsets 5 and 6 lie before 7");
        assert_eq!(reply.changes.rows.len(), 1);
        assert!(reply.changes.state.is_some(), "applied events are stored");
        let quiet = barrier(&addr, 7).await.expect("nothing new");
        assert!(quiet.changes.is_empty(), "nothing moved since the last one");
        addr.do_send(batch(vec![envelope(7)]));
        assert_eq!(
            barrier(&addr, 7)
                .await
                .expect_err("offset 7 is not before 7"),
            BarrierError::Overtaken {
                stream_id: "s".into(),
                partition: 0,
                applied: 7,
                next_offset: 7,
            }
        );
    }

    #[actix_rt::test]
    async fn an_idle_watermark_advance_is_snapshotted() {
        let sink = Sink.start().recipient();
        let addr = WindowActor::new(
            StreamWindows::new("s"),
            0,
            TimeDelta::minutes(10),
            1,
            sink,
            Faults::default(),
        )
        .start();
        addr.do_send(batch(vec![envelope(0)]));
        barrier(&addr, 1).await.expect("answers");
        let (reply, mut answer) = tokio::sync::mpsc::unbounded_channel();
        let wm = DateTime::parse_from_rfc3339("2025-12-31T23:59:30Z")
            .expect("valid")
            .with_timezone(&Utc);
        addr.do_send(Barrier {
            idle_watermark: Some(wm),
            end_of_input: false,
            next_offset: Some(1),
            reply,
        });
        let reply = answer.recv().await.expect("answers").1.expect("no error");
        assert!(
            reply.changes.state.is_some(),
            "a watermark that moved without events must survive a restart"
        );
        assert_eq!(reply.changes.watermark, Some(wm));
        assert_eq!(reply.watermark, Some(wm));
    }

    #[test]
    fn a_late_event_is_described_by_its_window_and_the_watermark() {
        let event = envelope(0).event;
        let watermark = DateTime::parse_from_rfc3339("2026-01-01T00:05:00Z")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(
            late_error(&event, Some(watermark)),
            "the window starting 2025-12-31T23:59:00Z is final for stream s \
             (watermark 2026-01-01T00:05:00Z)"
        );
    }
}
