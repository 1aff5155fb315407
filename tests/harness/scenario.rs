//! Test scenarios written once: the generator settings of a run, how to
//! produce it with the real `streamstats generate` binary, and how to
//! reproduce the same messages in process.

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, TimeDelta, Utc};
use streamstats_actors::generator::{Clock, Generator, GeneratorConfig, Message};
use streamstats_actors::truth::Expected;

use super::process::TempDir;
use super::Broker;

/// One generated run.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub count: u64,
    pub streams: u32,
    /// Zipf exponent of stream sizes (0: uniform).
    pub stream_skew: f64,
    pub users: u32,
    pub start: &'static str,
    pub spacing_ms: i64,
    pub out_of_order: f64,
    pub late: f64,
    pub malformed: f64,
    pub duplicate: f64,
    pub allowed_lateness_secs: i64,
}

impl Scenario {
    /// Virtual clock with every kind of trouble: out-of-order, late,
    /// malformed and duplicated messages.
    pub fn with_trouble(count: u64) -> Scenario {
        Scenario {
            seed: 20_251_220,
            count,
            streams: 25,
            stream_skew: 0.0,
            users: 400,
            start: "2025-12-20T18:00:00Z",
            spacing_ms: 20,
            out_of_order: 0.1,
            late: 0.02,
            malformed: 0.02,
            duplicate: 0.01,
            allowed_lateness_secs: 600,
        }
    }

    /// The same scenario with another seed.
    pub fn seeded(mut self, seed: u64) -> Scenario {
        self.seed = seed;
        self
    }

    fn start_time(&self) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(self.start)
            .expect("scenario start is RFC 3339")
            .with_timezone(&Utc)
    }

    /// The generator settings the binary is given.
    pub fn config(&self) -> GeneratorConfig {
        GeneratorConfig {
            seed: self.seed,
            streams: self.streams,
            stream_skew: self.stream_skew,
            users: self.users,
            clock: Clock::Virtual {
                start: self.start_time(),
                spacing: TimeDelta::milliseconds(self.spacing_ms),
            },
            out_of_order: self.out_of_order,
            late: self.late,
            malformed: self.malformed,
            duplicate: self.duplicate,
            allowed_lateness: TimeDelta::seconds(self.allowed_lateness_secs),
        }
    }

    /// The same messages, generated in process.
    pub fn messages(&self) -> (Vec<Message>, Expected) {
        let now = Utc::now();
        let mut generator = Generator::new(self.config(), now);
        let count = usize::try_from(self.count).expect("count fits usize");
        let messages = (0..count).map(|_| generator.next_message(now)).collect();
        (messages, generator.expected())
    }

    /// The `streamstats generate` arguments of this run (without its output).
    pub fn args(&self) -> Vec<String> {
        [
            ("--seed", self.seed.to_string()),
            ("--count", self.count.to_string()),
            ("--rate", "0".to_owned()),
            ("--stream-skew", self.stream_skew.to_string()),
            ("--streams", self.streams.to_string()),
            ("--users", self.users.to_string()),
            ("--start-time", self.start.to_owned()),
            ("--spacing", format!("{}ms", self.spacing_ms)),
            ("--out-of-order", self.out_of_order.to_string()),
            ("--late", self.late.to_string()),
            ("--malformed", self.malformed.to_string()),
            ("--duplicate", self.duplicate.to_string()),
            (
                "--allowed-lateness",
                format!("{}s", self.allowed_lateness_secs),
            ),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value])
        .collect()
    }

    /// Writes the run as JSON lines to `path` (gzip when it ends in `.gz`)
    /// with `streamstats generate --output`.
    pub fn write_file(&self, path: &Path) {
        let status = Command::new(env!("CARGO_BIN_EXE_streamstats"))
            .arg("generate")
            .args(self.args())
            .arg("--output")
            .arg(path)
            .env("RUST_LOG", "warn")
            .status()
            .expect("streamstats generate runs");
        assert!(status.success(), "streamstats generate failed: {status}");
    }

    /// Produces the run with `streamstats generate` and returns the
    /// expected tables it wrote.
    pub fn produce(&self, broker: &Broker, topic: &str, partitions: i32) -> Expected {
        let dir = TempDir::new("streamstats-expected");
        let path = dir.path().join("expected.json");
        let status = Command::new(env!("CARGO_BIN_EXE_streamstats"))
            .arg("generate")
            .args([
                "--kafka-brokers",
                &broker.bootstrap(),
                "--kafka-topic",
                topic,
            ])
            .args(["--partitions", &partitions.to_string()])
            .args(self.args())
            .arg("--expected")
            .arg(&path)
            .env("RUST_LOG", "warn")
            .status()
            .expect("streamstats generate runs");
        assert!(status.success(), "streamstats generate failed: {status}");
        read_expected(&path)
    }
}

/// Reads a `--expected` file.
pub fn read_expected(path: &Path) -> Expected {
    let text = std::fs::read_to_string(path).expect("expected file is readable");
    serde_json::from_str(&text).expect("expected file is valid JSON")
}
