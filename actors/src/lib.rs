//! The streamstats pipeline as a library.
//!
//! Message flow: Kafka → [`consumer`] (parsing by [`event`]; bad input →
//! dead letters) → one [`window_actor`] per stream running the pure
//! [`window`] model (minute windows, watermark, presence set) → [`writer`]
//! → Postgres ([`store`]). Delivery is exactly once: each [`checkpoint`] is
//! one transaction holding result rows, the window state (stored
//! incrementally), dead letters and
//! the next offset of every partition, taken at a barrier so they describe
//! the same instant; restarts resume from it. [`supervise`] turns failures
//! into rollbacks. [`generator`] produces deterministic events and
//! [`truth`] computes the tables a correct run must end with.

pub mod checkpoint;
pub mod config;
pub mod consumer;
pub mod event;
#[cfg(test)]
mod event_fuzz;
mod event_scan;
pub mod generator;
pub mod hash;
pub mod lines;
pub mod messages;
pub mod metrics;
pub mod pipeline;
pub mod store;
pub mod supervise;
pub mod truth;
pub mod window;
pub mod window_actor;
pub mod writer;
