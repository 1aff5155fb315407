//! A tansu broker (Kafka protocol) on a free loopback port with `sqlite://`
//! storage in its own directory: its log and committed offsets survive a
//! kill -9, and offsets are right when a consumer resumes mid-batch
//! (`memory://` gets both wrong).

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use streamstats_actors::generator::Message;

use super::process::{command, ChildProcess, TempDir};
use super::{free_port, unique_name, wait_for};

/// A running tansu broker.
pub struct Broker {
    process: Option<ChildProcess>,
    port: u16,
    storage: String,
    // Last field: the directory goes after the broker is stopped.
    dir: TempDir,
}

/// The tansu binary: `$TANSU_BIN`, else the cache that
/// `scripts/install-deps.sh` fills.
pub fn tansu_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("TANSU_BIN") {
        return PathBuf::from(bin);
    }
    let cache = std::env::var("STREAMSTATS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").expect("HOME is set")).join(".cache/streamstats")
        });
    let bin = cache.join("tansu/bin/tansu");
    assert!(
        bin.exists(),
        "tansu is not installed at {}: run scripts/install-deps.sh",
        bin.display()
    );
    bin
}

impl Broker {
    /// Starts the broker without waiting; see [`Broker::wait_ready`].
    pub fn spawn() -> Broker {
        Broker::spawn_with_storage("sqlite://tansu.db")
    }

    /// Starts the broker on another storage engine. Only benchmarks that
    /// read from offset 0 may use `memory://`: it returns wrong offsets when
    /// a consumer resumes mid-batch.
    pub fn spawn_with_storage(storage: &str) -> Broker {
        let mut broker = Broker {
            process: None,
            port: free_port(),
            storage: storage.to_owned(),
            dir: TempDir::new("streamstats-tansu"),
        };
        broker.resume_no_wait();
        broker
    }

    /// Starts the broker and waits until it serves metadata.
    pub fn start() -> Broker {
        let broker = Broker::spawn();
        broker.wait_ready();
        broker
    }

    fn resume_no_wait(&mut self) {
        assert!(self.process.is_none(), "broker is already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut cmd = command(&tansu_bin(), false);
        cmd.current_dir(self.dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &self.storage])
            .env("RUST_LOG", "warn");
        let log = self.dir.path().join("tansu.log");
        self.process = Some(ChildProcess::spawn("tansu", cmd, log));
    }

    /// Starts the broker again on the same port and storage.
    pub fn resume(&mut self) {
        self.resume_no_wait();
        self.wait_ready();
    }

    /// Waits until the broker answers a metadata request.
    pub fn wait_ready(&self) {
        let consumer: BaseConsumer = self.client_config().create().expect("consumer config");
        wait_for(
            "the broker to serve metadata",
            Duration::from_secs(60),
            || {
                consumer
                    .fetch_metadata(None, Duration::from_millis(500))
                    .ok()
            },
        );
    }

    /// Sends the broker `signal` (`STOP` freezes it with its connections
    /// open, `CONT` wakes it).
    pub fn signal(&self, signal: &str) {
        self.process
            .as_ref()
            .expect("the broker is running")
            .signal(signal);
    }

    /// Kills the broker with SIGKILL (its sqlite log survives).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop("KILL", Duration::from_secs(10));
        }
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client config pointing at this broker.
    pub fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", self.bootstrap());
        cfg
    }

    /// A consumer assigned to every partition of `topic` from the start.
    pub fn consumer_from_start(&self, topic: &str, partitions: i32) -> BaseConsumer {
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", "test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("valid partition");
        }
        consumer.assign(&tpl).expect("assign");
        consumer
    }

    /// Produces event payloads keyed by their own `stream_id`, as the
    /// contract requires (`k` for payloads without one).
    pub fn produce_events(&self, topic: &str, payloads: &[Vec<u8>]) {
        let key_of = |p: &[u8]| -> Vec<u8> {
            serde_json::from_slice::<serde_json::Value>(p)
                .ok()
                .and_then(|v| v.get("stream_id")?.as_str().map(|s| s.as_bytes().to_vec()))
                .unwrap_or_else(|| b"k".to_vec())
        };
        self.produce_records(topic, payloads.iter().map(|p| (key_of(p), p)));
    }

    /// Produces generated messages with their own keys, in order.
    pub fn produce_messages(&self, topic: &str, messages: &[Message]) {
        self.produce_records(
            topic,
            messages
                .iter()
                .map(|m| (m.key.as_bytes().to_vec(), &m.payload)),
        );
    }

    /// Produces `payloads` with `key` through an idempotent producer and
    /// waits until every one is acknowledged.
    pub fn produce(&self, topic: &str, key: &[u8], payloads: &[Vec<u8>]) {
        self.produce_records(topic, payloads.iter().map(|p| (key.to_vec(), p)));
    }

    fn produce_records<'a>(
        &self,
        topic: &str,
        records: impl Iterator<Item = (Vec<u8>, &'a Vec<u8>)>,
    ) {
        let producer: ThreadedProducer<DefaultProducerContext> = self
            .client_config()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.max.bytes", "2000000")
            .create()
            .expect("producer");
        for (key, payload) in records {
            let mut record = BaseRecord::<[u8], [u8]>::to(topic)
                .key(key.as_slice())
                .payload(payload.as_slice());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer
            .flush(Duration::from_secs(60))
            .expect("all delivered");
    }

    /// Creates a uniquely named topic with `partitions` partitions.
    pub fn create_topic(&self, prefix: &str, partitions: i32) -> String {
        let topic = unique_name(prefix);
        let admin: AdminClient<DefaultClientContext> =
            self.client_config().create().expect("admin config");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let new_topic = NewTopic::new(&topic, partitions, TopicReplication::Fixed(1));
        let results = runtime
            .block_on(admin.create_topics([&new_topic], &AdminOptions::new()))
            .expect("create_topics request");
        for result in results {
            result.unwrap_or_else(|(t, code)| panic!("cannot create topic {t}: {code}"));
        }
        topic
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop("TERM", Duration::from_secs(10));
        }
    }
}
