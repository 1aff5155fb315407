//! The window semantics of SPEC §3 as a pure model, free of actors and I/O.
//!
//! A [`StreamWindows`] is everything one stream needs: its presence set, its
//! watermark and its open minutes. Events are applied in log order; a window
//! whose end is at or before the watermark is final and leaves memory, and an
//! event for a final window is late. The window actors run this model and the
//! generator runs the very same code to compute ground truth.

mod minute;
mod stream;

pub use minute::{minute_of, MinuteAgg, WindowRow, WINDOW};
pub use stream::{Applied, Changes, StreamStateRow, StreamWindows, ViewerDelta, CHUNK_USERS};

#[cfg(test)]
mod tests;
