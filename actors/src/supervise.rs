//! Supervision helpers: turning panics into clean actor stops, restart
//! backoff, and the test-only fault injector.
//!
//! actix's `Supervisor` restarts an actor that stops, but a panic unwinding
//! out of a handler is not a stop: it can take the arbiter thread down. So
//! every handler that runs pipeline code goes through [`catch`], and a
//! caught panic becomes `ctx.stop()` (and a rollback) at the boundary.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::FaultPlan;

/// The kinds of long-lived actor: the `actor` label of
/// `streamstats_actor_restarts_total` and the targets of fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// The consumer (its poll batches).
    Consumer,
    /// A per-stream window actor (its event batches).
    Window,
    /// The writer (its checkpoints).
    Writer,
}

impl ActorKind {
    /// Every kind, for metric initialisation.
    pub const ALL: [ActorKind; 3] = [ActorKind::Consumer, ActorKind::Window, ActorKind::Writer];

    /// The stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Consumer => "consumer",
            ActorKind::Window => "window",
            ActorKind::Writer => "writer",
        }
    }
}

impl std::fmt::Display for ActorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ActorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ActorKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not consumer, window or writer"))
    }
}

/// Runs `f`, returning the panic message instead of unwinding.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic with a non-string payload".to_owned())
    })
}

/// Exponential restart backoff: the first restart is immediate, repeated
/// ones within a minute wait 100 ms, 200 ms, … up to 10 s.
#[derive(Debug, Default)]
pub struct Backoff {
    recent: Vec<Instant>,
}

impl Backoff {
    /// Records a restart now and returns how long to wait before it.
    pub fn next_delay(&mut self) -> Duration {
        let now = Instant::now();
        self.recent
            .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
        let repeats = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        self.recent.push(now);
        if repeats == 0 {
            return Duration::ZERO;
        }
        let ms = 100u64.saturating_mul(1u64 << repeats.min(7).saturating_sub(1));
        Duration::from_millis(ms.min(10_000))
    }
}

/// Panics an actor once on its Nth message when a [`FaultPlan`] says so.
/// Counting is shared by every actor of the kind and survives restarts, so
/// the fault fires exactly once per process.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    plan: Option<FaultPlan>,
    seen: Arc<AtomicU64>,
    fired: Arc<AtomicBool>,
}

impl Faults {
    /// A fault injector for `plan` (none: never fires).
    pub fn new(plan: Option<FaultPlan>) -> Self {
        Faults {
            plan,
            seen: Arc::new(AtomicU64::new(0)),
            fired: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Counts `n` messages of `target` and panics if the planned one is among them.
    pub fn tick(&self, target: ActorKind, n: u64) {
        let Some(plan) = self.plan else { return };
        if plan.actor != target || n == 0 {
            return;
        }
        let before = self.seen.fetch_add(n, Ordering::Relaxed);
        if before < plan.at_message
            && before + n >= plan.at_message
            && !self.fired.swap(true, Ordering::Relaxed)
        {
            panic!(
                "injected fault: {target:?} panics on message {}",
                plan.at_message
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_turns_panics_into_errors() {
        assert_eq!(catch(|| 3), Ok(3));
        assert_eq!(catch(|| panic!("boom")), Err::<(), _>("boom".to_owned()));
        let n = 7;
        assert_eq!(catch(|| panic!("n={n}")), Err::<(), _>("n=7".to_owned()));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let mut b = Backoff::default();
        let delays: Vec<u128> = (0..10).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays[..5], [0, 100, 200, 400, 800]);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert!(delays.iter().all(|d| *d <= 10_000));
    }

    #[test]
    fn faults_fire_once_at_the_planned_message() {
        let faults = Faults::new(Some(FaultPlan {
            actor: ActorKind::Window,
            at_message: 5,
        }));
        faults.tick(ActorKind::Writer, 10);
        faults.tick(ActorKind::Window, 4);
        assert!(catch(|| faults.tick(ActorKind::Window, 3)).is_err());
        assert!(catch(|| faults.tick(ActorKind::Window, 100)).is_ok());
        assert!(catch(|| Faults::new(None).tick(ActorKind::Window, 1)).is_ok());
    }
}
