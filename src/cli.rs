//! Command-line interface: every setting is a flag with an environment
//! variable fallback and a default that works with the local stack.
//! `value_name` is the variable's name, so a bad value's error names it.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

/// Real-time streaming analytics: Kafka events to per-minute Postgres windows, exactly once.
#[derive(Debug, Parser)]
#[command(name = "streamstats", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the database migrations and exit.
    Migrate(MigrateArgs),
    /// Produce deterministic events to Kafka.
    Generate(GenerateArgs),
    /// Run the pipeline and the HTTP API in one process.
    Serve(ServeArgs),
    /// Read JSON-lines files (plain or .gz) into the tables, exactly once,
    /// then exit; a rerun after a crash resumes where the last commit ended.
    Replay(ReplayArgs),
    /// Run the whole stack locally: Postgres, broker, serve, generator, Prometheus.
    Stack(crate::stack::StackArgs),
}

/// Where the database is.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        default_value = "postgres://streamstats@127.0.0.1:55432/streamstats"
    )]
    pub database_url: String,
}

/// Where the broker and topic are.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Comma-separated bootstrap servers.
    #[arg(
        long,
        env = "KAFKA_BROKERS",
        value_name = "KAFKA_BROKERS",
        default_value = "127.0.0.1:19092"
    )]
    pub kafka_brokers: String,
    /// Topic the events are on.
    #[arg(
        long,
        env = "KAFKA_TOPIC",
        value_name = "KAFKA_TOPIC",
        default_value = "stream.events"
    )]
    pub kafka_topic: String,
}

/// `streamstats serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Consumer group; the key of the offsets stored with the results.
    #[arg(
        long,
        env = "KAFKA_GROUP_ID",
        value_name = "KAFKA_GROUP_ID",
        default_value = "streamstats"
    )]
    pub kafka_group_id: String,
    /// How partitions are assigned: `self` takes every partition of the topic
    /// without joining a group (one instance; restarts resume at once on any
    /// broker; a second instance stands by), `group` lets the consumer group
    /// split them between instances (scale-out).
    #[arg(long, env = "KAFKA_ASSIGNMENT", value_name = "KAFKA_ASSIGNMENT", default_value = "self",
          value_parser = ["self", "group"])]
    pub kafka_assignment: String,
    /// Static group membership id (`group.instance.id`) in group mode, for
    /// brokers that honour it: a restarted member gets its partitions back
    /// without waiting for the session timeout. Unique per instance.
    #[arg(
        long,
        env = "KAFKA_GROUP_INSTANCE_ID",
        value_name = "KAFKA_GROUP_INSTANCE_ID"
    )]
    pub kafka_group_instance_id: Option<String>,
    /// Stable name of this instance across restarts (default: host name and
    /// HTTP port). A restarted instance takes its own partitions back at once.
    #[arg(long, env = "INSTANCE_ID", value_name = "INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Self-assignment: how long another instance's claim on the partitions
    /// lasts without a checkpoint refreshing it before this one takes over.
    #[arg(long, env = "OWNER_LEASE", value_name = "OWNER_LEASE", default_value = "10s",
          value_parser = parse_positive_duration)]
    pub owner_lease: Duration,
    /// How far an event time may lie ahead of its Kafka message timestamp
    /// before it is rejected as timestamp_out_of_range.
    #[arg(long, env = "MAX_FUTURE_SKEW", value_name = "MAX_FUTURE_SKEW", default_value = "5m",
          value_parser = parse_duration)]
    pub max_future_skew: Duration,
    /// Where partitions without a stored offset start: earliest or latest.
    #[arg(long, env = "KAFKA_OFFSET_RESET", value_name = "KAFKA_OFFSET_RESET", default_value = "earliest",
          value_parser = ["earliest", "latest"])]
    pub kafka_offset_reset: String,
    /// HTTP listen address for the API and /prometheus.
    #[arg(long, env = "HTTP_ADDR", value_name = "HTTP_ADDR", default_value = "0.0.0.0:8000",
          value_parser = parse_addr)]
    pub http_addr: std::net::SocketAddr,
    /// How far behind a stream's latest event time its windows stay open.
    #[arg(long, env = "ALLOWED_LATENESS", value_name = "ALLOWED_LATENESS", default_value = "10m",
          value_parser = parse_duration)]
    pub allowed_lateness: Duration,
    /// Quiet time after which a caught-up stream's watermark follows the wall clock.
    #[arg(long, env = "IDLE_FINALIZE", value_name = "IDLE_FINALIZE", default_value = "30s",
          value_parser = parse_positive_duration)]
    pub idle_finalize: Duration,
    /// Time between checkpoints.
    #[arg(long, env = "CHECKPOINT_INTERVAL", value_name = "CHECKPOINT_INTERVAL", default_value = "1s",
          value_parser = parse_positive_duration)]
    pub checkpoint_interval: Duration,
    /// Uncommitted events at which consumption pauses until a checkpoint commits.
    #[arg(long, env = "MAX_UNCOMMITTED_EVENTS", value_name = "MAX_UNCOMMITTED_EVENTS",
          default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1000..))]
    pub max_uncommitted_events: u64,
    /// Window rows whose minute started this long before the newest window
    /// (or before now, if earlier) are deleted.
    #[arg(long, env = "RETENTION", value_name = "RETENTION", default_value = "30d",
          value_parser = parse_positive_duration)]
    pub retention: Duration,
    /// Dead letters received longer ago than this are deleted.
    #[arg(long, env = "DEAD_LETTER_RETENTION", value_name = "DEAD_LETTER_RETENTION",
          default_value = "7d", value_parser = parse_positive_duration)]
    pub dead_letter_retention: Duration,
    /// Time between two retention passes.
    #[arg(long, env = "RETENTION_INTERVAL", value_name = "RETENTION_INTERVAL",
          default_value = "1m", value_parser = parse_positive_duration)]
    pub retention_interval: Duration,
    /// Longest time an API answer is served from memory when no checkpoint of
    /// this process committed (other writers); default: CHECKPOINT_INTERVAL.
    #[arg(long, env = "API_CACHE_TTL", value_name = "API_CACHE_TTL",
          value_parser = parse_duration)]
    pub api_cache_ttl: Option<Duration>,
    /// Connections in the Postgres pool.
    #[arg(long, env = "DATABASE_POOL_SIZE", value_name = "DATABASE_POOL_SIZE", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(2..=64))]
    pub database_pool_size: u32,
    /// TEST ONLY: make an actor panic once, as actor:N (consumer, window or writer).
    #[arg(
        long,
        env = "STREAMSTATS_INJECT_PANIC",
        value_name = "STREAMSTATS_INJECT_PANIC",
        hide = true
    )]
    pub inject_panic: Option<streamstats_actors::config::FaultPlan>,
}

/// `streamstats replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// JSON-lines files, one event per line, read in this order as one log;
    /// names ending in `.gz` are decompressed.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Name the position and streams are stored under (default: `file:` and
    /// the files' absolute paths). A rerun with the same name resumes.
    #[arg(long, env = "REPLAY_SOURCE", value_name = "REPLAY_SOURCE")]
    pub source: Option<String>,
    /// How far behind a stream's latest event time its windows stay open.
    #[arg(long, env = "ALLOWED_LATENESS", value_name = "ALLOWED_LATENESS", default_value = "10m",
          value_parser = parse_duration)]
    pub allowed_lateness: Duration,
    /// Time between checkpoints.
    #[arg(long, env = "CHECKPOINT_INTERVAL", value_name = "CHECKPOINT_INTERVAL", default_value = "1s",
          value_parser = parse_positive_duration)]
    pub checkpoint_interval: Duration,
    /// Uncommitted events at which reading pauses until a checkpoint commits.
    #[arg(long, env = "MAX_UNCOMMITTED_EVENTS", value_name = "MAX_UNCOMMITTED_EVENTS",
          default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1000..))]
    pub max_uncommitted_events: u64,
    /// Connections in the Postgres pool.
    #[arg(long, env = "DATABASE_POOL_SIZE", value_name = "DATABASE_POOL_SIZE", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(2..=64))]
    pub database_pool_size: u32,
    /// Progress bar on stderr: `auto` (drawn when stderr is a terminal) or
    /// `never`; without a bar a progress line is printed every 5 s.
    #[arg(long, env = "REPLAY_PROGRESS", value_name = "REPLAY_PROGRESS", default_value = "auto",
          value_parser = ["auto", "never"])]
    pub progress: String,
}

/// `streamstats migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Revert every migration instead (drops all pipeline tables and data).
    #[arg(long)]
    pub revert: bool,
}

/// `streamstats generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Seed of the deterministic sequence: same seed and flags, same bytes.
    #[arg(long, env = "GEN_SEED", value_name = "GEN_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Messages per second; 0 sends as fast as possible.
    #[arg(
        long,
        env = "GEN_RATE",
        value_name = "GEN_RATE",
        default_value_t = 20.0
    )]
    pub rate: f64,
    /// Messages to send; unbounded when absent.
    #[arg(long, env = "GEN_COUNT", value_name = "GEN_COUNT")]
    pub count: Option<u64>,
    /// Number of distinct streams.
    #[arg(long, env = "GEN_STREAMS", value_name = "GEN_STREAMS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub streams: u32,
    /// Zipf exponent of stream sizes: 0 is uniform, 1.1 gives a few huge
    /// streams and a long tail.
    #[arg(long, env = "GEN_STREAM_SKEW", value_name = "GEN_STREAM_SKEW", default_value_t = 0.0,
          value_parser = parse_skew)]
    pub stream_skew: f64,
    /// Number of distinct users.
    #[arg(long, env = "GEN_USERS", value_name = "GEN_USERS", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub users: u32,
    /// Virtual clock: time of the first event (RFC 3339). Live clock when absent.
    #[arg(long, env = "GEN_START_TIME", value_name = "GEN_START_TIME", value_parser = parse_time)]
    pub start_time: Option<DateTime<Utc>>,
    /// Virtual clock: event-time spacing between messages.
    #[arg(long, env = "GEN_SPACING", value_name = "GEN_SPACING", default_value = "100ms",
          value_parser = parse_duration)]
    pub spacing: Duration,
    /// Fraction of events stamped behind the clock, within the lateness.
    #[arg(long, env = "GEN_OUT_OF_ORDER", value_name = "GEN_OUT_OF_ORDER", default_value_t = 0.0,
          value_parser = parse_fraction)]
    pub out_of_order: f64,
    /// Fraction of events aimed at an already final window.
    #[arg(long, env = "GEN_LATE", value_name = "GEN_LATE", default_value_t = 0.0,
          value_parser = parse_fraction)]
    pub late: f64,
    /// Fraction of messages that violate the event contract.
    #[arg(long, env = "GEN_MALFORMED", value_name = "GEN_MALFORMED", default_value_t = 0.0,
          value_parser = parse_fraction)]
    pub malformed: f64,
    /// Fraction of messages sent twice.
    #[arg(long, env = "GEN_DUPLICATE", value_name = "GEN_DUPLICATE", default_value_t = 0.0,
          value_parser = parse_fraction)]
    pub duplicate: f64,
    /// The pipeline's allowed lateness, used to aim late events.
    #[arg(long, env = "ALLOWED_LATENESS", value_name = "ALLOWED_LATENESS", default_value = "10m",
          value_parser = parse_duration)]
    pub allowed_lateness: Duration,
    /// Create the topic with this many partitions when it does not exist.
    #[arg(long, env = "GEN_PARTITIONS", value_name = "GEN_PARTITIONS", default_value_t = 3,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    /// Write the exact expected tables of everything sent to this JSON file.
    #[arg(long, env = "GEN_EXPECTED", value_name = "GEN_EXPECTED")]
    pub expected: Option<PathBuf>,
    /// Write the events to this JSON-lines file (gzip if it ends in `.gz`)
    /// instead of Kafka, with expected tables as `streamstats replay` sees them.
    #[arg(long, env = "GEN_OUTPUT", value_name = "GEN_OUTPUT")]
    pub output: Option<PathBuf>,
}

/// Parses durations written like `500ms`, `30s`, `10m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{e}; write durations like 500ms, 30s, 10m or 1h"))
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be longer than zero".to_owned()),
        d => Ok(d),
    }
}

fn parse_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse()
        .map_err(|e| format!("{e}; write an address like 0.0.0.0:8000"))
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}; write times in RFC 3339, like 2025-12-20T18:00:00Z"))
}

fn parse_skew(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=5.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not an exponent between 0 and 5")),
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not a fraction between 0 and 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_use_the_spec_spelling() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("ten minutes").is_err());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = Cli::try_parse_from(["streamstats", "generate", "--late", "2"])
            .expect_err("fraction above 1");
        assert!(err.to_string().contains("GEN_LATE"), "{err}");
        let err = Cli::try_parse_from(["streamstats", "generate", "--allowed-lateness", "soon"])
            .expect_err("bad duration");
        assert!(err.to_string().contains("ALLOWED_LATENESS"), "{err}");
        for var in [
            "--retention",
            "--dead-letter-retention",
            "--retention-interval",
        ] {
            let err = Cli::try_parse_from(["streamstats", "serve", var, "a month"])
                .expect_err("bad duration");
            let name = var
                .trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase();
            assert!(err.to_string().contains(&name), "{err}");
        }
        let err = Cli::try_parse_from(["streamstats", "serve", "--retention", "0s"])
            .expect_err("zero retention");
        assert!(err.to_string().contains("RETENTION"), "{err}");
    }

    #[test]
    fn retention_defaults_are_thirty_and_seven_days() {
        let cli = Cli::try_parse_from(["streamstats", "serve"]).expect("defaults parse");
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(args.retention, Duration::from_secs(30 * 86_400));
        assert_eq!(args.dead_letter_retention, Duration::from_secs(7 * 86_400));
        assert_eq!(args.api_cache_ttl, None);
    }
}
