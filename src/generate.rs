//! `streamstats generate`: produces the deterministic event sequence to
//! Kafka, keyed by stream id, through an idempotent producer, and can write
//! the exact tables a correct pipeline ends with.
//!
//! Delivery: every message is acknowledged by all in-sync replicas before
//! the run counts as done; a delivery failure fails the run (the expected
//! tables would no longer describe the topic).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use streamstats_actors::generator::{Clock, Generator, GeneratorConfig};
use streamstats_actors::truth::{Expected, Truth};

use crate::cli::GenerateArgs;

/// Errors of the generate command, named after the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The topic could not be created.
    #[error("cannot create topic {topic:?}: {source}")]
    CreateTopic { topic: String, source: KafkaError },
    /// The producer could not be built.
    #[error("cannot create the Kafka producer: {0}")]
    Producer(KafkaError),
    /// Some messages were not delivered.
    #[error("{failed} messages were not delivered (first error: {first})")]
    Delivery { failed: u64, first: String },
    /// Pending messages were not delivered before the flush timeout.
    #[error("cannot flush the producer: {0}")]
    Flush(KafkaError),
    /// The expected tables could not be written.
    #[error("cannot write the expected tables to {path}: {source}")]
    Expected {
        path: String,
        source: std::io::Error,
    },
    /// The output file could not be written.
    #[error("GEN_OUTPUT: cannot write {path}: {source}")]
    Output {
        path: String,
        source: std::io::Error,
    },
    /// `--output` needs a bounded count.
    #[error("GEN_COUNT: --output writes a file, so it needs a message count")]
    OutputWithoutCount,
    /// The async runtime for the admin client could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Delivery failures reported by librdkafka's callback.
#[derive(Default)]
struct DeliveryFailures {
    failed: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

/// The producer context: shares [`DeliveryFailures`] with the run loop.
#[derive(Clone, Default)]
struct DeliveryCounter(Arc<DeliveryFailures>);

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((err, _)) = result {
            self.0.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.0.first_error.lock() {
                first.get_or_insert_with(|| err.to_string());
            }
        }
    }
}

/// Runs the generator to completion (or forever when `--count` is absent).
pub fn run(args: GenerateArgs) -> Result<(), GenerateError> {
    if let Some(path) = args.output.clone() {
        return run_to_file(&args, &path);
    }
    ensure_topic(
        &args.kafka.kafka_brokers,
        &args.kafka.kafka_topic,
        args.partitions,
    )?;
    let counter = DeliveryCounter::default();
    let producer: ThreadedProducer<DeliveryCounter> = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka.kafka_brokers)
        // No duplicates or reordering from internal retries: a message is
        // written once, in order, per partition.
        .set("enable.idempotence", "true")
        // Required by idempotence; a message counts once every replica has it.
        .set("acks", "all")
        // Small batching delay: throughput without visible latency.
        .set("linger.ms", "5")
        .create_with_context(counter.clone())
        .map_err(GenerateError::Producer)?;

    let mut generator = Generator::new(generator_config(&args), Utc::now());
    log::info!(
        "Generating to topic {} at {} (seed {}, {} messages, {} per second).",
        args.kafka.kafka_topic,
        args.kafka.kafka_brokers,
        args.seed,
        args.count.map_or("unbounded".to_owned(), |c| c.to_string()),
        if args.rate > 0.0 {
            args.rate.to_string()
        } else {
            "max".to_owned()
        },
    );

    let started = Instant::now();
    let mut last_report = started;
    let mut sent: u64 = 0;
    while args.count.is_none_or(|c| sent < c) {
        if args.rate > 0.0 {
            let due = started + Duration::from_secs_f64(sent as f64 / args.rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        // The message timestamp is set explicitly, to the millisecond the
        // ground truth judged the event's future skew against.
        let now_ms = Utc::now().timestamp_millis();
        let wall = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_else(Utc::now);
        let msg = generator.next_message(wall);
        let mut record = BaseRecord::to(&args.kafka.kafka_topic)
            .key(msg.key.as_bytes())
            .payload(&msg.payload)
            .timestamp(now_ms);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((err, _)) => {
                    return Err(GenerateError::Delivery {
                        failed: 1,
                        first: err.to_string(),
                    })
                }
            }
        }
        sent += 1;
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!(
                "generate: {sent} messages sent, {:.0}/s",
                sent as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(GenerateError::Flush)?;
    let failed = counter.0.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = counter
            .0
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        return Err(GenerateError::Delivery { failed, first });
    }
    report(&args, &generator.expected(), sent, started)
}

fn generator_config(args: &GenerateArgs) -> GeneratorConfig {
    let clock = match args.start_time {
        Some(start) => Clock::Virtual {
            start,
            spacing: TimeDelta::from_std(args.spacing).unwrap_or(TimeDelta::MAX),
        },
        None => Clock::Live,
    };
    GeneratorConfig {
        seed: args.seed,
        streams: args.streams,
        stream_skew: args.stream_skew,
        users: args.users,
        clock,
        out_of_order: args.out_of_order,
        late: args.late,
        malformed: args.malformed,
        duplicate: args.duplicate,
        allowed_lateness: TimeDelta::from_std(args.allowed_lateness).unwrap_or(TimeDelta::MAX),
    }
}

/// Writes the messages' payloads as JSON lines to `path` (gzip when it
/// ends in `.gz`), at full speed; the expected tables are those of a
/// replay of the file (no key, no log time).
fn run_to_file(args: &GenerateArgs, path: &Path) -> Result<(), GenerateError> {
    let output = |source| GenerateError::Output {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::create(path).map_err(output)?;
    let mut out: Box<dyn Write> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(GzEncoder::new(
            BufWriter::with_capacity(1 << 20, file),
            Compression::fast(),
        ))
    } else {
        Box::new(BufWriter::with_capacity(1 << 20, file))
    };
    let cfg = generator_config(args);
    let mut truth = Truth::new(cfg.allowed_lateness, Utc::now());
    let mut generator = Generator::new(cfg, Utc::now());
    log::info!("Generating to {} (seed {}).", path.display(), args.seed);
    let started = Instant::now();
    let count = args.count.ok_or(GenerateError::OutputWithoutCount)?;
    for _ in 0..count {
        let msg = generator.next_message(Utc::now());
        truth.observe_lines(&msg.payload);
        out.write_all(&msg.payload).map_err(output)?;
        out.write_all(b"\n").map_err(output)?;
    }
    out.flush().map_err(output)?;
    drop(out);
    report(args, &truth.finish(), count, started)
}

/// Prints what was sent and writes the expected tables if asked to.
fn report(
    args: &GenerateArgs,
    expected: &Expected,
    sent: u64,
    started: Instant,
) -> Result<(), GenerateError> {
    eprintln!(
        "generate: done: {sent} messages in {:.1}s; {} events applied, {} dead letters ({}), {} window rows, {} streams",
        started.elapsed().as_secs_f64(),
        expected.applied,
        expected.dead_letter_total(),
        expected
            .dead_letters
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect::<Vec<_>>()
            .join(" "),
        expected.rows.len(),
        expected.stream_state.len(),
    );
    if let Some(path) = &args.expected {
        let write = || -> std::io::Result<()> {
            let file = std::io::BufWriter::new(std::fs::File::create(path)?);
            serde_json::to_writer_pretty(file, expected).map_err(std::io::Error::other)
        };
        write().map_err(|source| GenerateError::Expected {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Creates `topic` with `partitions` partitions unless it exists.
pub fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), GenerateError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(GenerateError::Producer)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(GenerateError::Runtime)?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = runtime
        .block_on(admin.create_topics([&new_topic], &AdminOptions::new()))
        .map_err(|source| GenerateError::CreateTopic {
            topic: topic.to_owned(),
            source,
        })?;
    for result in results {
        match result {
            Ok(_) => log::info!("Created topic {topic} with {partitions} partitions."),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(GenerateError::CreateTopic {
                    topic: topic.to_owned(),
                    source: KafkaError::AdminOp(code),
                })
            }
        }
    }
    Ok(())
}
