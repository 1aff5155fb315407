//! Wiring: starts the writer, the supervised consumer and the window
//! arbiter inside the running actix System, and exposes the pipeline's
//! status for readiness checks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix::{Addr, Arbiter, Supervisor, SyncArbiter};
use prometheus::IntGauge;

use crate::checkpoint::Fence;
use crate::config::PipelineConfig;
use crate::consumer::ConsumerActor;
use crate::metrics::Metrics;
use crate::store::Pool;
use crate::supervise::Faults;
use crate::writer::WriterActor;

/// What `/ready` needs to know about the pipeline.
#[derive(Debug)]
pub struct PipelineStatus {
    /// Partitions assigned, also exported as `streamstats_partitions_assigned`.
    assigned: IntGauge,
    error: Mutex<Option<String>>,
    broker_down: AtomicBool,
    /// Bytes of input files read (compressed bytes for gzip).
    read_bytes: Arc<AtomicU64>,
    /// Signalled when the consumer stops for good (after its final
    /// checkpoint, or halted).
    finished: tokio::sync::Notify,
}

impl PipelineStatus {
    /// A status that reports assignments through `assigned`.
    pub fn new(assigned: IntGauge) -> PipelineStatus {
        assigned.set(0);
        PipelineStatus {
            assigned,
            error: Mutex::new(None),
            broker_down: AtomicBool::new(false),
            read_bytes: Arc::default(),
            finished: tokio::sync::Notify::new(),
        }
    }

    /// The counter of input file bytes read, shared with the file source.
    pub fn read_bytes(&self) -> Arc<AtomicU64> {
        self.read_bytes.clone()
    }

    /// Records that the consumer stopped for good.
    pub fn finish(&self) {
        self.finished.notify_one();
    }

    /// Waits until the consumer stops for good: a file source's input is
    /// all committed, or the pipeline halted (see [`PipelineStatus::error`]).
    pub async fn finished(&self) {
        self.finished.notified().await;
    }

    /// Records whether a broker connection is up (from client statistics).
    pub fn set_broker_up(&self, up: bool) {
        self.broker_down.store(!up, Ordering::Relaxed);
    }

    /// True when the last client statistics showed no broker connection up.
    pub fn broker_down(&self) -> bool {
        self.broker_down.load(Ordering::Relaxed)
    }

    /// Records how many partitions are assigned.
    pub fn set_assigned(&self, n: usize) {
        self.assigned.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Partitions currently assigned.
    pub fn assigned(&self) -> usize {
        usize::try_from(self.assigned.get()).unwrap_or(0)
    }

    /// Records (or clears) the last checkpoint error.
    pub fn set_error(&self, error: Option<String>) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }

    /// The last checkpoint error, if the last attempt failed.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The running pipeline.
pub struct Pipeline {
    /// The supervised consumer (send it `Shutdown` to stop cleanly).
    pub consumer: Addr<ConsumerActor>,
    /// Readiness information.
    pub status: Arc<PipelineStatus>,
    _arbiters: Vec<Arbiter>,
}

/// Starts the pipeline in the current actix System.
pub fn start(cfg: PipelineConfig, pool: Pool, metrics: Metrics) -> Pipeline {
    let fence = Arc::new(Fence::default());
    let faults = Faults::new(cfg.faults);
    let status = Arc::new(PipelineStatus::new(metrics.partitions_assigned.clone()));
    let writer = {
        let (pool, fence, metrics, faults) =
            (pool.clone(), fence.clone(), metrics.clone(), faults.clone());
        SyncArbiter::start(1, move || {
            WriterActor::new(pool.clone(), fence.clone(), metrics.clone(), faults.clone())
        })
    };
    let consumer_arbiter = Arbiter::new();
    let window_arbiter = Arbiter::new();
    let consumer = {
        let status = status.clone();
        let windows = window_arbiter.handle();
        Supervisor::start_in_arbiter(&consumer_arbiter.handle(), move |_| {
            ConsumerActor::new(cfg, pool, fence, writer, metrics, faults, status, windows)
        })
    };
    Pipeline {
        consumer,
        status,
        _arbiters: vec![consumer_arbiter, window_arbiter],
    }
}
