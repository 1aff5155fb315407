//! A `streamstats serve` process under test, and the conditions tests wait
//! for: the database equal to ground truth, progress past a point.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use streamstats_actors::store;
use streamstats_actors::truth::Expected;

use super::process::{ChildProcess, TempDir};
use super::{free_port, unique_name, wait_for, Broker};

/// Settings of one `serve` process.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub database_url: String,
    pub brokers: String,
    pub topic: String,
    pub group_id: String,
    pub http_port: u16,
    /// Extra environment, e.g. `STREAMSTATS_INJECT_PANIC`.
    pub env: Vec<(String, String)>,
}

impl ServeConfig {
    /// Test defaults: fast checkpoints and idle finalization.
    pub fn new(database_url: &str, broker: &Broker, topic: &str) -> ServeConfig {
        ServeConfig {
            database_url: database_url.to_owned(),
            brokers: broker.bootstrap(),
            topic: topic.to_owned(),
            group_id: unique_name("group"),
            http_port: free_port(),
            env: Vec::new(),
        }
    }

    /// Adds an environment variable.
    pub fn with_env(mut self, key: &str, value: &str) -> ServeConfig {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// A running `streamstats serve`.
pub struct Serve {
    pub process: ChildProcess,
    pub cfg: ServeConfig,
    _logs: TempDir,
}

impl Serve {
    /// Starts `serve` and waits until `/health` answers.
    pub fn start(cfg: ServeConfig) -> Serve {
        let mut serve = Serve::spawn(cfg);
        let url = serve.url("/health");
        wait_for("serve to answer /health", Duration::from_secs(60), || {
            serve.process.assert_running();
            ureq::get(&url).call().ok()
        });
        serve
    }

    /// Starts `serve` without waiting for anything (to kill it during start-up).
    pub fn spawn(cfg: ServeConfig) -> Serve {
        let logs = TempDir::new("streamstats-serve");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamstats"));
        cmd.arg("serve")
            .env("DATABASE_URL", &cfg.database_url)
            .env("KAFKA_BROKERS", &cfg.brokers)
            .env("KAFKA_TOPIC", &cfg.topic)
            .env("KAFKA_GROUP_ID", &cfg.group_id)
            .env("HTTP_ADDR", format!("127.0.0.1:{}", cfg.http_port))
            .env("CHECKPOINT_INTERVAL", "200ms")
            .env("IDLE_FINALIZE", "1s")
            // Scenarios replay December 2025 on a virtual clock: the default
            // RETENTION (30d) would trim them while a test runs.
            .env("RETENTION", "36500d")
            .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn");
        for (k, v) in &cfg.env {
            cmd.env(k, v);
        }
        let process = ChildProcess::spawn("streamstats serve", cmd, logs.path().join("serve.log"));
        Serve {
            process,
            cfg,
            _logs: logs,
        }
    }

    /// Waits until this process committed a checkpoint, and returns how
    /// long that took from `since`.
    pub fn wait_first_commit(&mut self, since: std::time::Instant, timeout: Duration) -> Duration {
        let series = "streamstats_checkpoints_total{outcome=\"committed\"}";
        wait_for("the first committed checkpoint", timeout, || {
            self.process.assert_running();
            (self.try_metric(series).unwrap_or(0.0) >= 1.0).then(|| since.elapsed())
        })
    }

    /// Like [`Serve::metric`], but `None` while the process does not answer.
    pub fn try_metric(&self, series: &str) -> Option<f64> {
        let body = ureq::get(&self.url("/prometheus"))
            .timeout(Duration::from_millis(500))
            .call()
            .ok()?
            .into_string()
            .ok()?;
        sample(&body, series)
    }

    /// Sends SIGKILL and starts it again at once with the same settings;
    /// returns the new process and the time from the kill to its first
    /// committed checkpoint.
    pub fn crash_and_restart(mut self, timeout: Duration) -> (Serve, Duration) {
        self.kill9();
        let killed = std::time::Instant::now();
        let cfg = self.cfg.clone();
        drop(self);
        let mut serve = Serve::spawn(cfg);
        let took = serve.wait_first_commit(killed, timeout);
        (serve, took)
    }

    /// Starts it again with the same settings (after a stop or kill).
    pub fn restart(self) -> Serve {
        let cfg = self.cfg.clone();
        drop(self);
        Serve::start(cfg)
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.cfg.http_port)
    }

    /// GET `path`: status and body, whatever the status.
    pub fn get(&self, path: &str) -> (u16, String) {
        // Bounded, so a route that hangs fails the test instead of hanging it.
        match ureq::get(&self.url(path))
            .timeout(Duration::from_secs(60))
            .call()
        {
            Ok(resp) => (resp.status(), resp.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap_or_default()),
            Err(e) => panic!("GET {path} failed: {e}"),
        }
    }

    /// The value of an unlabelled (or exactly labelled) sample in /prometheus.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/prometheus");
        sample(&body, series)
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.process.stop("TERM", Duration::from_secs(60)).code()
    }

    /// Sends SIGKILL.
    pub fn kill9(&mut self) {
        self.process.stop("KILL", Duration::from_secs(10));
    }
}

/// The value of `series` in a Prometheus text body.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// What the database holds, in ground-truth form.
pub fn actual(database_url: &str) -> Expected {
    let mut conn = PgConnection::establish(database_url).expect("connect");
    let dead_letters = store::dead_letter_counts(&mut conn).expect("dead letters");
    Expected {
        messages: 0,
        applied: 0,
        rows: store::load_rows(&mut conn).expect("rows"),
        stream_state: store::load_stream_state(&mut conn).expect("stream_state"),
        dead_letters,
    }
}

/// Sum of the stored next offsets: how many messages a checkpoint covers.
pub fn committed_messages(database_url: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Total {
        #[diesel(sql_type = BigInt)]
        total: i64,
    }
    let Ok(mut conn) = PgConnection::establish(database_url) else {
        return 0;
    };
    diesel::sql_query("SELECT coalesce(sum(next_offset), 0)::bigint AS total FROM consumer_offsets")
        .get_result::<Total>(&mut conn)
        .map(|t| t.total)
        .unwrap_or(0)
}

/// Waits until the result tables equal `expected` exactly; on timeout
/// panics with the first differences and the service's log.
pub fn wait_for_truth(serve: &mut Serve, expected: &Expected, timeout: Duration) {
    if let Err(diff) = check_truth(serve, expected, timeout) {
        panic!("{diff}\nserve log:\n{}", serve.process.log_tail());
    }
}

/// Waits until the result tables equal `expected` exactly, or describes
/// the difference left after `timeout`.
pub fn check_truth(
    serve: &mut Serve,
    expected: &Expected,
    timeout: Duration,
) -> Result<(), String> {
    let url = serve.cfg.database_url.clone();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = serve.process.try_wait() {
            return Err(format!("serve exited with {status}"));
        }
        let got = actual(&url);
        if got.same_tables(expected) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "tables differ from ground truth after {timeout:?}:\n{}",
                describe_difference(&got, expected)
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn describe_difference(got: &Expected, want: &Expected) -> String {
    let mut out = Vec::new();
    out.push(format!(
        "rows: {} in db, {} expected",
        got.rows.len(),
        want.rows.len()
    ));
    let got_rows: BTreeMap<_, _> = got
        .rows
        .iter()
        .map(|r| ((r.window_start, &r.stream_id), r))
        .collect();
    let mut shown = 0;
    for w in &want.rows {
        let g = got_rows.get(&(w.window_start, &w.stream_id));
        if g != Some(&w) && shown < 5 {
            out.push(format!("  want {w:?}\n  got  {g:?}"));
            shown += 1;
        }
    }
    out.push(format!(
        "stream_state equal: {}; dead letters db {:?} expected {:?}",
        got.stream_state == want.stream_state,
        got.dead_letters,
        want.dead_letters
    ));
    out.join("\n")
}
