//! The streamstats pipeline as a library.
//!
//! Message flow: Kafka → [`event`] parsing (bad input → dead letters) →
//! per-stream [`window`] model (minute windows, watermark, presence set) →
//! checkpoint into Postgres ([`store`]): result rows, model state, dead
//! letters and the next offset of every partition in one transaction, so a
//! restart from the stored offsets and state reproduces the same tables
//! exactly. [`generator`] produces deterministic events and [`truth`]
//! computes the tables a correct run must end with.

pub mod event;
pub mod generator;
pub mod store;
pub mod truth;
pub mod window;
