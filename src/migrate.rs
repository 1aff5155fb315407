//! `streamstats migrate`: applies (or reverts) the embedded migrations.

use diesel::{Connection, PgConnection};
use streamstats_actors::store::{self, StoreError};

use crate::cli::MigrateArgs;

/// Errors of the migrate command.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database could not be reached.
    #[error("cannot connect to DATABASE_URL: {0}")]
    Connect(#[from] diesel::ConnectionError),
    /// A migration failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies pending migrations, or reverts all with `--revert`.
pub fn run(args: MigrateArgs) -> Result<(), MigrateError> {
    let mut conn = PgConnection::establish(&args.db.database_url)?;
    if args.revert {
        let reverted = store::revert_all_migrations(&mut conn)?;
        log::info!("Reverted {} migrations.", reverted.len());
    } else {
        let applied = store::run_migrations(&mut conn)?;
        log::info!(
            "Applied {} migrations; the schema is current.",
            applied.len()
        );
    }
    Ok(())
}
