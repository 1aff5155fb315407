//! Postgres storage: the connection pool, the embedded migrations, and every
//! query the pipeline and the tests run, as plain functions over a connection.

pub mod schema;

mod checkpoint;
mod latest;
mod migrate;
mod ownership;
pub mod queries;
mod results;
pub mod retention;
mod state;
mod upsert;

use diesel::pg::PgConnection;
use diesel::r2d2::ConnectionManager;

pub use checkpoint::write_checkpoint;
pub use latest::rebuild_latest;
pub use migrate::{revert_all_migrations, run_migrations};
pub use ownership::{check_group, claim_leased, load_assignment, owner_token, Claim};
pub use results::{dead_letter_counts, load_rows, load_stream_state};
pub use state::load_streams;
pub use upsert::WriteMode;

/// Most rows one bulk statement of a checkpoint carries: a larger
/// checkpoint is written as several statements in its one transaction, so
/// the bind buffers (ours and libpq's) stay a few megabytes whatever the
/// number of streams a checkpoint touches.
const STATEMENT_ROWS: usize = 10_000;

/// Runs `write` on `items` [`STATEMENT_ROWS`] at a time, in order, and
/// returns the sum of what it returned (rows written).
fn per_statement<T>(items: &[T], mut write: impl FnMut(&[T]) -> Result<usize>) -> Result<usize> {
    chunks(items.len()).try_fold(0, |written, range| Ok(written + write(&items[range])?))
}

/// The index ranges of `len` items, [`STATEMENT_ROWS`] at a time.
fn chunks(len: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..len)
        .step_by(STATEMENT_ROWS)
        .map(move |start| start..len.min(start + STATEMENT_ROWS))
}

/// A pool of Postgres connections.
pub type Pool = r2d2::Pool<ConnectionManager<PgConnection>>;

/// A connection checked out of the pool.
pub type PooledConn = r2d2::PooledConnection<ConnectionManager<PgConnection>>;

/// Errors of the storage layer, one variant per operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The pool could not be built or could not hand out a connection.
    #[error("cannot get a database connection: {0}")]
    Connect(#[from] r2d2::Error),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// The rows a checkpoint found differ from what the window model had
    /// stored (a row it meant to update is missing); nothing was written.
    #[error("stored rows differ from the model: {0}")]
    Diverged(String),
    /// This process no longer owns a partition the checkpoint covers.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The database holds the results of another consumer group.
    #[error("the database holds the results of consumer group {others:?}; group {group_id:?} would overwrite them (use the same KAFKA_GROUP_ID, or another database)")]
    OtherGroup {
        /// The group this process runs as.
        group_id: String,
        /// Groups found in `consumer_offsets`.
        others: Vec<String>,
    },
    /// Applying or reverting migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(String),
}

impl StoreError {
    /// True when `self` means Postgres cannot be reached (no connection, or
    /// the connection was lost mid-query, or it no longer answers a trivial
    /// statement), as opposed to a database that answered with an error.
    pub fn is_unreachable(&self, conn: &mut PgConnection) -> bool {
        use diesel::connection::SimpleConnection;
        use diesel::result::{DatabaseErrorKind, Error as DieselError};
        match self {
            StoreError::Connect(_) => true,
            StoreError::Query(DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            )) => true,
            _ => conn.batch_execute("SELECT 1").is_err(),
        }
    }
}

/// Result alias of the storage layer.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Builds a pool of at most `max_size` connections to `database_url`.
/// Connections are opened lazily, so an unreachable database does not stop
/// start-up; the first query reports it.
pub fn pool(database_url: &str, max_size: u32) -> Result<Pool> {
    let manager = ConnectionManager::<PgConnection>::new(database_url);
    Ok(r2d2::Pool::builder()
        .max_size(max_size)
        .min_idle(Some(0))
        .connection_timeout(std::time::Duration::from_secs(2))
        .error_handler(Box::new(QuietErrors))
        .build_unchecked(manager))
}

/// r2d2 logs every failed connection attempt at error level; while the
/// database is down that is a flood. The callers report the outage once
/// (failed checkpoints at warn, 503 answers), so attempts go to debug.
#[derive(Debug)]
struct QuietErrors;

impl r2d2::HandleError<diesel::r2d2::Error> for QuietErrors {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        log::debug!("Postgres connection attempt failed: {error}");
    }
}
