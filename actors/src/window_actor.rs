//! WindowActor: one per stream, running the pure window model.
//!
//! Delivery: it applies the batches the consumer sends, in mailbox order,
//! and hands its changes over only at a checkpoint barrier, so everything
//! it reports is covered by the offsets of the same checkpoint. Its state is
//! never trusted after a panic: the failure is reported and the pipeline
//! rolls back to the last committed checkpoint.

use actix::{Actor, ActorContext, Context, Handler, Recipient};
use chrono::TimeDelta;

use crate::checkpoint::{DeadLetter, Snapshot};
use crate::config::FaultTarget;
use crate::event::RejectReason;
use crate::messages::{Barrier, BarrierReply, EventBatch, WindowFailed};
use crate::supervise::{catch, Faults};
use crate::window::{Applied, StreamWindows};

/// The actor owning one stream's [`StreamWindows`].
pub struct WindowActor {
    model: StreamWindows,
    partition: i32,
    allowed_lateness: TimeDelta,
    late: Vec<DeadLetter>,
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
}

impl Actor for WindowActor {
    type Context = Context<Self>;
}

impl Handler<EventBatch> for WindowActor {
    type Result = ();

    fn handle(&mut self, batch: EventBatch, ctx: &mut Context<Self>) {
        if self.failed {
            return;
        }
        let result = catch(|| {
            self.faults.tick(FaultTarget::Window, 1);
            for env in batch.0 {
                if self.model.apply(&env.event, self.allowed_lateness) == Applied::Late {
                    self.late.push(DeadLetter {
                        partition: env.partition,
                        offset: env.offset,
                        reason: RejectReason::Late,
                        error: format!(
                            "window of {} is final for stream {} (watermark {:?})",
                            env.event.ts,
                            env.event.stream_id,
                            self.model.watermark()
                        ),
                        payload: env.payload,
                        key: env.key,
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
    type Result = Result<BarrierReply, String>;

    fn handle(&mut self, barrier: Barrier, ctx: &mut Context<Self>) -> Self::Result {
        if self.failed {
            return Err(format!("window actor of {} failed", self.model.stream_id()));
        }
        let result = catch(|| {
            if let Some(wm) = barrier.idle_watermark {
                self.model.advance_watermark(wm);
            }
            let changes = self.model.take_changes();
            let finalized = changes.rows.iter().filter(|r| r.is_final).count() as u64;
            let snapshot = if changes.is_empty() {
                None
            } else {
                let state =
                    serde_json::to_value(&self.model).expect("the window model serialises to JSON");
                Some(Snapshot {
                    stream_id: self.model.stream_id().to_owned(),
                    partition: self.partition,
                    state,
                })
            };
            BarrierReply {
                changes,
                snapshot,
                late: std::mem::take(&mut self.late),
                open_windows: self.model.open_windows(),
                watermark: self.model.watermark(),
                finalized,
            }
        });
        if let Err(reason) = &result {
            self.fail(reason.clone(), ctx);
        }
        result
    }
}
