//! WriterActor: commits checkpoints to Postgres, one transaction each, on a
//! `SyncArbiter` thread so blocking diesel work never runs on an async one.
//!
//! Delivery: a checkpoint is all-or-nothing. Success means rows, states,
//! restore increments, dead letters and offsets are durable together; any error
//! means none of it is, and the same checkpoint may be retried as is.
//! Errors are told apart: the database unavailable (retry), the data
//! refused by a database that is up (a defect: retrying cannot help), the
//! partitions owned by someone else (fenced).

use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, ActorContext, Handler, SyncContext};
use chrono::Utc;

use crate::checkpoint::Fence;
use crate::messages::WriteCheckpoint;
use crate::metrics::Metrics;
use crate::store::{self, Pool, StoreError, WriteMode};
use crate::supervise::{catch, ActorKind, Faults};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::RunQueryDsl;

/// Why a checkpoint was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The database could not be reached or gave up; retry the same checkpoint.
    #[error("checkpoint not committed: {0}")]
    Database(String),
    /// The database is up and refused the checkpoint's data (a constraint
    /// or a value it cannot store): retrying the same data cannot succeed.
    #[error("checkpoint refused by the database: {0}")]
    Refused(String),
    /// The checkpoint's partitions were reassigned; drop it.
    #[error("checkpoint of epoch {checkpoint} fenced off (epoch {current}): {reason}")]
    Fenced {
        checkpoint: u64,
        current: u64,
        reason: String,
    },
    /// The writer panicked; the pipeline must roll back.
    #[error("writer panicked: {0}")]
    Panicked(String),
}

/// The actor holding the pool.
pub struct WriterActor {
    pool: Pool,
    fence: Arc<Fence>,
    metrics: Metrics,
    faults: Faults,
}

impl WriterActor {
    /// A writer over `pool`.
    pub fn new(pool: Pool, fence: Arc<Fence>, metrics: Metrics, faults: Faults) -> Self {
        WriterActor {
            pool,
            fence,
            metrics,
            faults,
        }
    }

    fn commit(&self, msg: &WriteCheckpoint) -> Result<(), WriteError> {
        let cp = &msg.0;
        let _held = self.fence.lock();
        let current = self.fence.epoch();
        if cp.epoch != current {
            return Err(WriteError::Fenced {
                checkpoint: cp.epoch,
                current,
                reason: "a newer assignment in this process".to_owned(),
            });
        }
        let started = Instant::now();
        let mut conn = self
            .pool
            .get()
            .map_err(|e| WriteError::Database(StoreError::from(e).to_string()))?;
        let mut written = store::write_checkpoint(&mut conn, cp, Utc::now(), WriteMode::AsTracked);
        if let Err(e) = &written {
            if differs_from_model(e) {
                // A retry of a checkpoint whose first commit did happen, or
                // a model that lost track: upserts write the same result.
                log::warn!(
                    "A checkpoint met rows it did not expect ({e}); writing it again as upserts."
                );
                written = store::write_checkpoint(&mut conn, cp, Utc::now(), WriteMode::Upsert);
            }
        }
        written.map_err(|e| match e {
            StoreError::Fenced(reason) => WriteError::Fenced {
                checkpoint: cp.epoch,
                current,
                reason,
            },
            StoreError::Query(DieselError::DatabaseError(kind, info))
                if refused_data(kind, &mut conn) =>
            {
                WriteError::Refused(info.message().to_owned())
            }
            other => WriteError::Database(other.to_string()),
        })?;
        self.metrics
            .checkpoint_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.checkpoint_rows.observe(cp.row_count() as f64);
        Ok(())
    }
}

/// True when the stored rows were not what the window model expected: an
/// update missed a row, or an insert met one.
fn differs_from_model(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Diverged(_)
            | StoreError::Query(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _
            ))
    )
}

/// True when an error of `kind` came from a database that is up and
/// answering: integrity violations (SQLSTATE class 23) always; any other
/// server error (class 22, data exceptions, has no kind of its own) when
/// the same connection still answers a trivial query afterwards.
fn refused_data(kind: DatabaseErrorKind, conn: &mut store::PooledConn) -> bool {
    match kind {
        DatabaseErrorKind::UniqueViolation
        | DatabaseErrorKind::ForeignKeyViolation
        | DatabaseErrorKind::NotNullViolation
        | DatabaseErrorKind::CheckViolation
        | DatabaseErrorKind::RestrictViolation
        | DatabaseErrorKind::ExclusionViolation => true,
        DatabaseErrorKind::Unknown => {
            let conn: &mut diesel::PgConnection = conn;
            diesel::sql_query("SELECT 1").execute(conn).is_ok()
        }
        _ => false,
    }
}

impl Actor for WriterActor {
    type Context = SyncContext<Self>;
}

impl Handler<WriteCheckpoint> for WriterActor {
    type Result = Result<(), WriteError>;

    fn handle(&mut self, msg: WriteCheckpoint, ctx: &mut SyncContext<Self>) -> Self::Result {
        match catch(|| {
            self.faults.tick(ActorKind::Writer, 1);
            self.commit(&msg)
        }) {
            Ok(result) => result,
            Err(reason) => {
                // SyncArbiter builds a fresh writer from its factory.
                ctx.stop();
                Err(WriteError::Panicked(reason))
            }
        }
    }
}
