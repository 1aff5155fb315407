//! The deterministic event source (SPEC §2) and its ground truth.
//!
//! Same seed and settings ⇒ byte-identical messages. Every message is also
//! fed to a [`Truth`], so the generator knows the exact tables a correct
//! pipeline ends with. Late events are aimed behind the stream's watermark
//! as the model computes it, so they are late by construction.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use crate::truth::{Expected, Truth};
use crate::window::minute_of;

/// Where event times come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Event `i` is stamped `start + i × spacing`: reproducible.
    Virtual {
        /// Time of the first event.
        start: DateTime<Utc>,
        /// Event-time distance between consecutive messages.
        spacing: TimeDelta,
    },
    /// Events are stamped with the wall clock when generated.
    Live,
}

/// Generator settings.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Seed of the random sequence.
    pub seed: u64,
    /// Number of distinct stream ids (`stream-0` …).
    pub streams: u32,
    /// Zipf exponent of stream sizes: 0 draws streams uniformly; 1 or more
    /// gives a few huge streams (`stream-0` the largest) and a long tail.
    pub stream_skew: f64,
    /// Number of distinct user ids (`user-0` …).
    pub users: u32,
    /// Source of event times.
    pub clock: Clock,
    /// Fraction of events stamped up to 90% of the lateness behind the clock.
    pub out_of_order: f64,
    /// Fraction of events aimed at an already final window.
    pub late: f64,
    /// Fraction of messages that violate the contract.
    pub malformed: f64,
    /// Fraction of messages sent twice (each copy counts).
    pub duplicate: f64,
    /// The pipeline's `ALLOWED_LATENESS`, used to aim late events.
    pub allowed_lateness: TimeDelta,
}

/// One Kafka message: key and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The stream id (or a stream id for malformed payloads).
    pub key: String,
    /// The JSON payload (or garbage, for malformed messages).
    pub payload: Vec<u8>,
}

/// The deterministic message sequence.
#[derive(Debug)]
pub struct Generator {
    cfg: GeneratorConfig,
    rng: Pcg64,
    seq: u64,
    truth: Truth,
    repeat: Option<Message>,
    /// Cumulative stream weights when `stream_skew` > 0.
    stream_cdf: Vec<f64>,
}

/// Malformed payload shapes, each violating one rule of SPEC §2.
const MALFORMED_KINDS: u32 = 13;

impl Generator {
    /// A generator; `now` is the consumer clock its ground truth assumes.
    pub fn new(cfg: GeneratorConfig, now: DateTime<Utc>) -> Self {
        let rng = Pcg64::seed_from_u64(cfg.seed);
        let truth = Truth::new(cfg.allowed_lateness, now);
        let stream_cdf = zipf_cdf(cfg.streams, cfg.stream_skew);
        Generator {
            cfg,
            rng,
            seq: 0,
            truth,
            repeat: None,
            stream_cdf,
        }
    }

    /// The next message. `wall` stamps events under [`Clock::Live`].
    pub fn next_message(&mut self, wall: DateTime<Utc>) -> Message {
        let msg = match self.repeat.take() {
            Some(msg) => msg,
            None => {
                let msg = self.fresh(wall);
                if self.rng.random_bool(self.cfg.duplicate) {
                    self.repeat = Some(msg.clone());
                }
                msg
            }
        };
        self.truth
            .observe_message(Some(msg.key.as_bytes()), &msg.payload, Some(wall));
        msg
    }

    /// The tables a correct pipeline ends with after every message so far.
    pub fn expected(&self) -> Expected {
        self.truth.clone().finish()
    }

    fn fresh(&mut self, wall: DateTime<Utc>) -> Message {
        let seq = self.seq;
        self.seq += 1;
        let now = match self.cfg.clock {
            Clock::Virtual { start, spacing } => {
                start + spacing * i32::try_from(seq).unwrap_or(i32::MAX)
            }
            Clock::Live => wall,
        };
        let stream = format!("stream-{}", self.draw_stream());
        if self.rng.random_bool(self.cfg.malformed) {
            let kind = self.rng.random_range(0..MALFORMED_KINDS);
            // A valid event under another stream's key (SPEC §2 key_mismatch).
            let key = if kind == KEY_MISMATCH {
                format!("{stream}-elsewhere")
            } else {
                stream.clone()
            };
            return Message {
                payload: malformed(kind, seq, &stream, now),
                key,
            };
        }
        let ts = self.event_time(&stream, now);
        let user = format!("user-{}", self.rng.random_range(0..self.cfg.users.max(1)));
        let fields = match self.rng.random_range(0..100) {
            0..=2 => r#""event_type":"stream_start""#.to_owned(),
            3 => r#""event_type":"stream_stop""#.to_owned(),
            4..=33 => format!(r#""event_type":"viewer_join","user_id":"{user}""#),
            34..=58 => format!(r#""event_type":"viewer_leave","user_id":"{user}""#),
            59..=89 => format!(
                r#""event_type":"chat_message","user_id":"{user}","message_len":{}"#,
                self.rng.random_range(0..280)
            ),
            _ => {
                let cents: u32 = self.rng.random_range(1..=50_000);
                let alias = if self.rng.random_bool(0.1) {
                    "amount"
                } else {
                    "amount_usd"
                };
                format!(
                    r#""event_type":"donation","user_id":"{user}","{alias}":{}.{:02}"#,
                    cents / 100,
                    cents % 100
                )
            }
        };
        let payload = format!(
            r#"{{"event_id":"evt-{}-{seq}","ts":"{}","stream_id":"{stream}",{fields}}}"#,
            self.cfg.seed,
            spell(ts, seq),
        );
        Message {
            key: stream,
            payload: payload.into_bytes(),
        }
    }

    /// The index of the next event's stream: uniform, or Zipf-distributed.
    fn draw_stream(&mut self) -> u32 {
        if self.stream_cdf.is_empty() {
            return self.rng.random_range(0..self.cfg.streams.max(1));
        }
        let x: f64 = self.rng.random();
        let i = self.stream_cdf.partition_point(|c| *c < x);
        u32::try_from(i.min(self.stream_cdf.len() - 1)).unwrap_or(0)
    }

    /// The event time for the next valid event of `stream`.
    fn event_time(&mut self, stream: &str, now: DateTime<Utc>) -> DateTime<Utc> {
        let roll: f64 = self.rng.random();
        if roll < self.cfg.late {
            if let Some(wm) = self.truth.watermark(stream) {
                // The window of this time ends at or before the watermark.
                let back = TimeDelta::seconds(1 + self.rng.random_range(0..600));
                return (minute_of(wm) - back).max(DateTime::UNIX_EPOCH);
            }
        } else if roll < self.cfg.late + self.cfg.out_of_order {
            let max_ms = self.cfg.allowed_lateness.num_milliseconds() * 9 / 10;
            let back = TimeDelta::milliseconds(self.rng.random_range(0..max_ms.max(1)));
            return now - back;
        }
        now
    }
}

/// Normalised cumulative weights `1/(i+1)^s` of `n` streams; empty for `s` = 0.
fn zipf_cdf(n: u32, s: f64) -> Vec<f64> {
    if s <= 0.0 || n <= 1 {
        return Vec::new();
    }
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (0..n)
        .map(|i| {
            acc += 1.0 / f64::from(i + 1).powf(s);
            acc
        })
        .collect();
    for c in &mut cdf {
        *c /= acc;
    }
    cdf
}

/// RFC 3339 in the spellings producers use: `Z`, the seed's `+00:00` with
/// microseconds, and a non-UTC offset.
fn spell(ts: DateTime<Utc>, seq: u64) -> String {
    match seq % 3 {
        0 => ts.to_rfc3339_opts(SecondsFormat::Millis, true),
        1 => ts.to_rfc3339_opts(SecondsFormat::Micros, false),
        _ => {
            let offset = chrono::FixedOffset::east_opt(2 * 3600).expect("+02:00 is a valid offset");
            ts.with_timezone(&offset)
                .to_rfc3339_opts(SecondsFormat::AutoSi, false)
        }
    }
}

/// The malformed kind whose payload is valid but whose key is not its stream.
const KEY_MISMATCH: u32 = 10;

/// A payload that breaks one rule of the contract (with its key, for
/// [`KEY_MISMATCH`]).
fn malformed(kind: u32, seq: u64, stream: &str, now: DateTime<Utc>) -> Vec<u8> {
    let ts = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let head = format!(r#""event_id":"bad-{seq}","ts":"{ts}""#);
    let text = match kind {
        0 => format!("{{{head},\"event_type\":"),
        1 => return [b"{\"event_id\":\"".as_slice(), &[0xff, 0xfe], b"\"}"].concat(),
        2 => format!(r#"{{{head},"event_type":"viewer_join","stream_id":"{stream}"}}"#),
        3 => format!(r#"{{{head},"event_type":"raid","stream_id":"{stream}"}}"#),
        4 => format!(
            r#"{{{head},"event_type":"donation","stream_id":"{stream}","user_id":"u","amount_usd":-5.00}}"#
        ),
        5 => format!(
            r#"{{{head},"event_type":"donation","stream_id":"{stream}","user_id":"u","amount_usd":1.005}}"#
        ),
        6 => format!(
            r#"{{{head},"event_type":"chat_message","stream_id":"{stream}","user_id":"u","message_len":"12"}}"#
        ),
        7 => format!(r#"{{{head},"event_type":"stream_start","stream_id":""}}"#),
        8 => format!(
            r#"{{"event_id":"bad-{seq}","ts":"2025-13-45T99:00:00Z","event_type":"stream_start","stream_id":"{stream}"}}"#
        ),
        KEY_MISMATCH => format!(r#"{{{head},"event_type":"stream_start","stream_id":"{stream}"}}"#),
        // A NUL in an id: valid JSON that Postgres text cannot hold.
        11 => format!(
            r#"{{{head},"event_type":"viewer_join","stream_id":"{stream}","user_id":"u\u0000"}}"#
        ),
        // A clock far ahead of the message's log timestamp (a century, so
        // the payload stays deterministic under the virtual clock).
        12 => {
            let ahead =
                (now + TimeDelta::days(36_525)).to_rfc3339_opts(SecondsFormat::Millis, true);
            format!(
                r#"{{"event_id":"bad-{seq}","ts":"{ahead}","event_type":"stream_start","stream_id":"{stream}"}}"#
            )
        }
        _ => format!(r#"[{head}]"#),
    };
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(seed: u64) -> GeneratorConfig {
        GeneratorConfig {
            seed,
            streams: 5,
            stream_skew: 0.0,
            users: 20,
            clock: Clock::Virtual {
                start: DateTime::parse_from_rfc3339("2025-06-01T00:00:00Z")
                    .expect("valid")
                    .with_timezone(&Utc),
                spacing: TimeDelta::milliseconds(250),
            },
            out_of_order: 0.1,
            late: 0.02,
            malformed: 0.02,
            duplicate: 0.01,
            allowed_lateness: TimeDelta::minutes(10),
        }
    }

    fn run(seed: u64, n: usize) -> (Vec<Message>, Expected) {
        let now = Utc::now();
        let mut g = Generator::new(cfg(seed), now);
        let msgs = (0..n).map(|_| g.next_message(now)).collect();
        (msgs, g.expected())
    }

    #[test]
    fn same_seed_gives_identical_messages_and_truth() {
        let (a, ea) = run(7, 5_000);
        let (b, eb) = run(7, 5_000);
        assert_eq!(a, b);
        assert_eq!(ea, eb);
        let (c, _) = run(8, 5_000);
        assert_ne!(a, c);
    }

    #[test]
    fn every_fraction_shows_up_in_the_truth() {
        let (msgs, expected) = run(1, 20_000);
        assert_eq!(expected.messages, 20_000);
        assert_eq!(msgs.len(), 20_000);
        let late = expected.dead_letters.get("late").copied().unwrap_or(0);
        assert!(
            late > 100,
            "late events are aimed behind the watermark: {late}"
        );
        let malformed = expected.dead_letter_total() - late;
        assert!(
            malformed > 100,
            "malformed messages are rejected: {malformed}"
        );
        assert_eq!(
            expected.applied + expected.dead_letter_total(),
            expected.messages
        );
        let dupes = msgs.windows(2).filter(|w| w[0] == w[1]).count();
        assert!(dupes > 50, "duplicates are sent back to back: {dupes}");
        assert!(expected.rows.iter().all(|r| r.is_final));
        let events: i64 = expected.rows.iter().map(|r| r.events).sum();
        assert_eq!(
            u64::try_from(events).expect("non-negative"),
            expected.applied
        );
    }

    #[test]
    fn skewed_streams_have_a_head_and_a_tail() {
        let mut c = cfg(3);
        c.streams = 1_000;
        c.stream_skew = 1.1;
        c.malformed = 0.0;
        let now = Utc::now();
        let mut g = Generator::new(c, now);
        let mut counts = std::collections::HashMap::<String, u32>::new();
        for _ in 0..50_000 {
            *counts.entry(g.next_message(now).key).or_default() += 1;
        }
        let head = counts.get("stream-0").copied().unwrap_or(0);
        let median_tail = counts.get("stream-500").copied().unwrap_or(0);
        assert!(head > 5_000, "the largest stream gets a big share: {head}");
        assert!(median_tail < 50, "the tail is thin: {median_tail}");
        assert!(counts.len() > 500, "the tail is long: {}", counts.len());
    }

    #[test]
    fn every_malformed_kind_is_rejected() {
        let now = Utc::now();
        for kind in 0..MALFORMED_KINDS {
            let payload = malformed(kind, 1, "s", now);
            let key: &[u8] = if kind == KEY_MISMATCH { b"t" } else { b"s" };
            assert!(
                crate::event::Event::from_message(
                    Some(key),
                    &payload,
                    Some(now),
                    crate::event::DEFAULT_MAX_FUTURE_SKEW
                )
                .is_err(),
                "kind {kind}"
            );
        }
    }
}
