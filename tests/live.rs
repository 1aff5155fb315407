//! Live behaviour: a row of an open window shows up (not final) within two
//! checkpoint intervals of its event being produced, and turns final once
//! the stream's watermark passes the window's end.

mod harness;

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use diesel::prelude::*;
use harness::{Serve, ServeConfig, Services};
use streamstats_actors::store;
use streamstats_actors::window::{minute_of, WindowRow};

const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
const LATENESS: TimeDelta = TimeDelta::seconds(5);

fn send(broker: &harness::Broker, topic: &str, id: &str, ts: DateTime<Utc>) {
    let payload = format!(
        r#"{{"event_id":"{id}","ts":"{}","event_type":"chat_message","stream_id":"live","user_id":"u1","message_len":5}}"#,
        ts.to_rfc3339_opts(SecondsFormat::Micros, true)
    );
    broker.produce(topic, b"live", &[payload.into_bytes()]);
}

fn row_of(url: &str, window_start: DateTime<Utc>) -> Option<WindowRow> {
    let mut conn = PgConnection::establish(url).ok()?;
    store::load_rows(&mut conn)
        .ok()?
        .into_iter()
        .find(|r| r.window_start == window_start && r.stream_id == "live")
}

#[test]
fn open_window_is_visible_within_two_checkpoints_and_finalizes_when_the_watermark_passes() {
    let services = Services::start();
    let topic = services.broker.create_topic("live", 1);
    let db = services.postgres.create_database("live");
    let cfg = ServeConfig::new(&db, &services.broker, &topic)
        .with_env("CHECKPOINT_INTERVAL", "1s")
        .with_env("ALLOWED_LATENESS", "5s")
        // Long enough that idle finalization cannot be what closes the window.
        .with_env("IDLE_FINALIZE", "10m");
    let mut serve = Serve::start(cfg);
    harness::wait_for(
        "the partition to be assigned",
        Duration::from_secs(60),
        || {
            serve.process.assert_running();
            (serve.get("/ready").0 == 200).then_some(())
        },
    );

    let first = Utc::now();
    send(&services.broker, &topic, "e1", first);
    let produced = Instant::now();
    let window = minute_of(first);
    let row = harness::wait_for("the open window's row", CHECKPOINT_INTERVAL * 10, || {
        row_of(&db, window)
    });
    let visible_after = produced.elapsed();
    assert!(!row.is_final, "the window is still open");
    assert_eq!(
        (
            row.events,
            row.chat_messages,
            row.chat_chars,
            row.unique_chatters
        ),
        (1, 1, 5, 1)
    );
    assert!(
        visible_after <= CHECKPOINT_INTERVAL * 2,
        "row visible after {visible_after:?}, more than two checkpoint intervals"
    );

    // An event past the window's end plus the lateness moves the watermark
    // beyond the first window: it becomes final.
    let later = window + TimeDelta::minutes(1) + LATENESS + TimeDelta::seconds(1);
    send(
        &services.broker,
        &topic,
        "e2",
        later.max(first + TimeDelta::seconds(1)),
    );
    let row = harness::wait_for("the window to turn final", Duration::from_secs(30), || {
        row_of(&db, window).filter(|r| r.is_final)
    });
    assert_eq!(row.events, 1);
    serve.terminate();
}
