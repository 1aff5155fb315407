//! `streamstats replay`: JSON-lines files, plain and gzip, into the same
//! tables as `serve`, equal to ground truth computed by reading the same
//! lines through the same parser and window model; exactly once across
//! several `kill -9` at random instants; dead letters named by file and line;
//! a stop by SIGTERM exits 1 and resumes.

mod harness;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use harness::{actual, committed_messages, Postgres, Scenario};
use rand::{Rng, SeedableRng};
use streamstats_actors::event::Event;
use streamstats_actors::lines::{event_lines, LinePosition};
use streamstats_actors::truth::{Expected, Truth};

/// The bytes of a file as a replay reads them.
fn contents(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).expect("readable");
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    } else {
        raw
    }
}

/// Ground truth of the files read in order.
fn truth_of(paths: &[PathBuf]) -> Expected {
    let mut truth = Truth::new(TimeDelta::minutes(10), Utc::now());
    for path in paths {
        truth.observe_lines(&contents(path));
    }
    truth.finish()
}

fn replay_command(db: &str, paths: &[PathBuf]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamstats"));
    cmd.arg("replay")
        .args(paths)
        .env("DATABASE_URL", db)
        .env("CHECKPOINT_INTERVAL", "100ms")
        .env("RUST_LOG", "info");
    cmd
}

fn replay(db: &str, paths: &[PathBuf]) -> ExitStatus {
    replay_command(db, paths).status().expect("replay runs")
}

fn assert_tables(db: &str, expected: &Expected) {
    let got = actual(db);
    assert_eq!(got.dead_letters, expected.dead_letters, "dead letters");
    assert_eq!(got.stream_state, expected.stream_state, "stream_state");
    assert_eq!(got.rows.len(), expected.rows.len(), "window rows");
    assert!(
        got.rows == expected.rows,
        "window rows differ from ground truth"
    );
}

#[derive(QueryableByName)]
struct Letter {
    #[diesel(sql_type = Text)]
    reason: String,
}

#[test]
fn plain_and_gzip_files_replay_to_ground_truth_with_dead_letters_by_file_and_line() {
    let postgres = Postgres::start();
    let db = postgres.create_database("replay");
    let dir = tempdir("replay-files");
    let plain = dir.join("first.jsonl");
    let gz = dir.join("second.jsonl.gz");
    Scenario::with_trouble(30_000).write_file(&plain);
    Scenario::with_trouble(20_000).seeded(7).write_file(&gz);
    let paths = vec![plain.clone(), gz.clone()];
    let expected = truth_of(&paths);
    assert!(expected.dead_letter_total() > 0 && !expected.rows.is_empty());

    assert!(replay(&db, &paths).success());
    assert_tables(&db, &expected);

    // Every rejected line of the gzip file is stored under its path and line.
    let text = contents(&gz);
    let canonical = std::fs::canonicalize(&gz).expect("exists");
    let mut conn = PgConnection::establish(&db).expect("connect");
    let mut checked = 0;
    for (line, payload) in event_lines(&text) {
        let Err(rejection) = Event::parse_bounded(payload, None, TimeDelta::minutes(5)) else {
            continue;
        };
        let stored: Letter = diesel::sql_query(
            "SELECT reason FROM dead_letters WHERE topic = $1 AND kafka_offset = $2",
        )
        .bind::<Text, _>(canonical.display().to_string())
        .bind::<BigInt, _>(i64::try_from(line).expect("fits"))
        .get_result(&mut conn)
        .unwrap_or_else(|e| panic!("line {line} of {} not dead-lettered: {e}", gz.display()));
        assert_eq!(stored.reason, rejection.reason.as_str(), "line {line}");
        checked += 1;
    }
    assert!(checked > 0, "the scenario has malformed lines");

    // A rerun resumes at the end: nothing changes.
    assert!(replay(&db, &paths).success());
    assert_tables(&db, &expected);

    // A file shorter than its committed position changed since: the rerun
    // stops with an error naming it instead of resuming on other data.
    Scenario::with_trouble(100).seeded(7).write_file(&gz);
    let out = replay_command(&db, &paths).output().expect("replay runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("changed since"), "{stderr}");
    assert_tables(&db, &expected);

    // A database a Kafka consumer group writes to is refused at start-up.
    let kafka_db = postgres.create_database("replay_kafka");
    let migrate = Command::new(env!("CARGO_BIN_EXE_streamstats"))
        .arg("migrate")
        .env("DATABASE_URL", &kafka_db)
        .env("RUST_LOG", "warn")
        .status()
        .expect("migrate runs");
    assert!(migrate.success());
    let mut conn = PgConnection::establish(&kafka_db).expect("connect");
    diesel::sql_query(
        "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, updated_at) \
         VALUES ('streamstats', 'stream.events', 0, 5, now())",
    )
    .execute(&mut conn)
    .expect("a Kafka group's offset");
    let out = replay_command(&kafka_db, &paths)
        .output()
        .expect("replay runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("database of its own"), "{stderr}");
}

#[test]
fn replay_killed_three_times_at_random_instants_resumes_exactly_once() {
    let postgres = Postgres::start();
    let db = postgres.create_database("replay_kill");
    let dir = tempdir("replay-kill");
    // Two files, so that kills also fall near and across the boundary.
    let first = dir.join("first.jsonl");
    let second = dir.join("second.jsonl.gz");
    Scenario::with_trouble(30_000).seeded(11).write_file(&first);
    Scenario::with_trouble(370_000)
        .seeded(12)
        .write_file(&second);
    let paths = vec![first, second];
    let expected = truth_of(&paths);
    let mut rng = rand_pcg::Pcg64::seed_from_u64(u64::from(std::process::id()));
    for kill in 1..=3 {
        let before = committed_messages(&db);
        let mut child = spawn_with_small_checkpoints(&db, &paths);
        // Kill during start-up once, then after further commits.
        let delay = if kill == 1 {
            Duration::from_millis(rng.random_range(50..400))
        } else {
            wait_for_commit_past(&db, before);
            Duration::from_millis(rng.random_range(0..300))
        };
        std::thread::sleep(delay);
        assert!(
            child.try_wait().expect("waitable").is_none(),
            "the input is long enough to be killed midway"
        );
        child.kill().expect("kill -9");
        child.wait().expect("reaped");
        let position = LinePosition::from_offset(committed_messages(&db)).expect("an offset");
        println!("kill {kill}: committed up to {position:?}");
    }
    // A stop by SIGTERM writes a final checkpoint and says it did not finish.
    let before = committed_messages(&db);
    let mut child = spawn_with_small_checkpoints(&db, &paths);
    wait_for_commit_past(&db, before);
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let stopped = child.wait().expect("reaped");
    assert_eq!(stopped.code(), Some(1), "an interrupted replay exits 1");
    assert!(replay(&db, &paths).success());
    assert_tables(&db, &expected);
}

/// A replay with small checkpoints: many commits to be stopped between.
fn spawn_with_small_checkpoints(db: &str, paths: &[PathBuf]) -> Child {
    replay_command(db, paths)
        .env("MAX_UNCOMMITTED_EVENTS", "20000")
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("replay starts")
}

/// Waits until the committed position moved past `before`.
fn wait_for_commit_past(db: &str, before: i64) {
    harness::wait_for("a further commit", Duration::from_secs(120), || {
        (committed_messages(db) > before).then_some(())
    });
}

/// A directory removed when the test ends.
fn tempdir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(harness::unique_name(prefix));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
