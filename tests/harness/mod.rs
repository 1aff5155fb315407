//! The integration-test harness: a throwaway Postgres cluster and a tansu
//! broker on free loopback ports, a unique topic and database per test, and
//! teardown on drop (also when the test panics). Child processes also get
//! `PDEATHSIG=KILL` through `setpriv`, so a killed test run leaves nothing.

#![allow(dead_code, unused_imports)]

mod broker;
mod postgres;
mod process;
mod prometheus;
mod scenario;
mod serve;

pub use broker::Broker;
pub use postgres::Postgres;
pub use process::{cpu_seconds, memory_kib};
pub use prometheus::Prometheus;
pub use scenario::Scenario;
pub use serve::{actual, check_truth, committed_messages, wait_for_truth, Serve, ServeConfig};

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A name unique within this machine's test runs: `prefix-pid-n`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released for the child).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("loopback has free ports");
    listener
        .local_addr()
        .expect("bound socket has an address")
        .port()
}

/// Both services, for tests that need the whole pipeline.
pub struct Services {
    pub postgres: Postgres,
    pub broker: Broker,
}

impl Services {
    /// Starts the broker and Postgres; the broker boots while initdb runs.
    /// Both are spawned from the calling thread: `PDEATHSIG` follows the
    /// spawning thread, so a helper thread would kill them when it ends.
    pub fn start() -> Services {
        let broker = Broker::spawn();
        let postgres = Postgres::start();
        broker.wait_ready();
        Services { postgres, broker }
    }
}
