//! Storage against a real Postgres: the embedded migrations apply, are
//! idempotent, revert, and apply again; money is exact in SQL; a
//! checkpoint inserts and updates as the model tracked, or upserts, and a
//! checkpoint larger than one statement is still one transaction.

mod harness;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use harness::Postgres;
use streamstats_actors::checkpoint::{Checkpoint, DeadLetter, StreamRecord};
use streamstats_actors::event::RejectReason;
use streamstats_actors::store::{self, StoreError, WriteMode};
use streamstats_actors::window::{StreamStateRow, WindowRow};

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

fn tables(conn: &mut PgConnection) -> Vec<String> {
    diesel::sql_query(
        "SELECT table_name AS name FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations' \
         ORDER BY table_name",
    )
    .load::<Name>(conn)
    .expect("catalog query")
    .into_iter()
    .map(|n| n.name)
    .collect()
}

#[test]
fn migrations_apply_reapply_and_revert_cleanly() {
    let pg = Postgres::start();
    let url = pg.create_database("migrate");
    let mut conn = PgConnection::establish(&url).expect("connect");

    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("migrations directory")
        .count();
    let applied = store::run_migrations(&mut conn).expect("first apply");
    assert_eq!(applied.len(), migrations);
    let expected = [
        "consumer_offsets",
        "dead_letters",
        "partition_owners",
        "stream_metrics_minute",
        "stream_state",
        "stream_viewers",
        "window_chatter_chunks",
    ];
    assert_eq!(tables(&mut conn), expected);

    assert!(store::run_migrations(&mut conn)
        .expect("second apply")
        .is_empty());

    let reverted = store::revert_all_migrations(&mut conn).expect("revert");
    assert_eq!(reverted.len(), migrations);
    assert!(tables(&mut conn).is_empty());

    assert_eq!(
        store::run_migrations(&mut conn).expect("re-apply").len(),
        migrations
    );
    assert_eq!(tables(&mut conn), expected);
}

#[derive(QueryableByName)]
struct Sum {
    #[diesel(sql_type = Text)]
    usd: String,
    #[diesel(sql_type = BigInt)]
    cents: i64,
}

#[test]
fn donations_usd_is_the_exact_decimal_of_the_cents() {
    let (_pg, mut conn) = migrated_database("money");
    // A million donations of $0.10 and $0.20: binary floating point would
    // drift; the NUMERIC column must read exactly $150000.00.
    diesel::sql_query(
        "INSERT INTO stream_metrics_minute (window_start, window_end, stream_id, active_viewers, \
         chat_messages, donations_cents, events, chat_chars, donations, viewer_joins, viewer_leaves, \
         unique_chatters, is_final) \
         SELECT to_timestamp(g * 60), to_timestamp(g * 60 + 60), 's', 0, 0, \
                CASE WHEN g % 2 = 0 THEN 10 ELSE 20 END, 1, 0, 1, 0, 0, 0, true \
         FROM generate_series(1, 1000000) AS g",
    )
    .execute(&mut conn)
    .expect("insert");
    let sum: Sum = diesel::sql_query(
        "SELECT sum(donations_usd)::text AS usd, sum(donations_cents)::bigint AS cents \
         FROM stream_metrics_minute",
    )
    .get_result(&mut conn)
    .expect("sum");
    assert_eq!(sum.usd, "150000.00");
    assert_eq!(sum.cents, 15_000_000);
}

/// A checkpoint of one window row and its stream's state row, each marked
/// as already stored or new.
fn one_row_checkpoint(events: i64, row_stored: bool, state_stored: bool) -> Checkpoint {
    let start = DateTime::parse_from_rfc3339("2025-12-20T18:00:00Z")
        .expect("time")
        .with_timezone(&Utc);
    let row = WindowRow {
        window_start: start,
        stream_id: "s1".to_owned(),
        active_viewers: 1,
        events,
        viewer_joins: events,
        viewer_leaves: 0,
        chat_messages: 0,
        chat_chars: 0,
        unique_chatters: 0,
        donations: 0,
        donation_cents: 0,
        is_final: false,
    };
    Checkpoint {
        group_id: "g".to_owned(),
        topic: "t".to_owned(),
        offsets: [(0, events)].into_iter().collect(),
        rows: vec![row],
        rows_stored: vec![row_stored],
        streams: vec![StreamRecord {
            state: StreamStateRow {
                stream_id: "s1".to_owned(),
                is_live: true,
                active_viewers: 1,
                last_event_at: Some(start),
            },
            partition: 0,
            watermark: None,
            open_windows: 1,
            latest_window: Some(start),
            stored: state_stored,
        }],
        ..Checkpoint::default()
    }
}

/// A Postgres of its own with one migrated database, and a connection to it.
fn migrated_database(name: &str) -> (Postgres, PgConnection) {
    let pg = Postgres::start();
    let url = pg.create_database(name);
    let mut conn = PgConnection::establish(&url).expect("connect");
    store::run_migrations(&mut conn).expect("apply");
    (pg, conn)
}

fn events_stored(conn: &mut PgConnection) -> Vec<i64> {
    store::load_rows(conn)
        .expect("rows")
        .iter()
        .map(|r| r.events)
        .collect()
}

#[test]
fn a_checkpoint_inserts_new_rows_updates_stored_ones_and_refuses_a_difference() {
    let (_pg, mut conn) = migrated_database("modes");
    let now = Utc::now();
    let tracked = WriteMode::AsTracked;

    // A row the model believes stored, but missing: nothing is written.
    let err = store::write_checkpoint(&mut conn, &one_row_checkpoint(1, true, false), now, tracked)
        .expect_err("an update of a missing row");
    assert!(matches!(err, StoreError::Diverged(_)), "{err}");
    assert!(events_stored(&mut conn).is_empty());
    assert!(store::load_stream_state(&mut conn)
        .expect("states")
        .is_empty());

    // New, then stored: an insert, then an update.
    store::write_checkpoint(
        &mut conn,
        &one_row_checkpoint(1, false, false),
        now,
        tracked,
    )
    .expect("insert");
    store::write_checkpoint(&mut conn, &one_row_checkpoint(2, true, true), now, tracked)
        .expect("update");
    assert_eq!(events_stored(&mut conn), vec![2]);

    // A row the model believes new, but present (a retried checkpoint
    // whose first commit happened): refused as tracked, written as upserts.
    let again = one_row_checkpoint(3, false, false);
    let err =
        store::write_checkpoint(&mut conn, &again, now, tracked).expect_err("a second insert");
    assert!(matches!(err, StoreError::Query(_)), "{err}");
    assert_eq!(events_stored(&mut conn), vec![2]);
    store::write_checkpoint(&mut conn, &again, now, WriteMode::Upsert).expect("upsert");
    assert_eq!(events_stored(&mut conn), vec![3]);
    let states = store::load_stream_state(&mut conn).expect("states");
    assert_eq!(states.len(), 1);
}

/// A checkpoint of `n` streams with one window row each (all marked
/// `stored` or all new) and `n` dead letters.
fn wide_checkpoint(n: usize, events: i64, stored: bool) -> Checkpoint {
    let mut cp = one_row_checkpoint(events, stored, stored);
    let (row, record) = (cp.rows[0].clone(), cp.streams[0].clone());
    cp.rows = (0..n)
        .map(|i| WindowRow {
            stream_id: format!("s{i}"),
            ..row.clone()
        })
        .collect();
    cp.rows_stored = vec![stored; n];
    cp.streams = (0..n)
        .map(|i| {
            let mut r = record.clone();
            r.state.stream_id = format!("s{i}");
            r
        })
        .collect();
    let first = events * n as i64;
    cp.dead_letters = letters(0, first..first + n as i64);
    cp
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(conn)
        .expect("count")
        .n
}

#[test]
fn a_checkpoint_larger_than_one_statement_is_written_whole_or_not_at_all() {
    let (_pg, mut conn) = migrated_database("wide");
    let now = Utc::now();
    // Several statements' worth of rows, states and dead letters.
    let n = 25_001;
    store::write_checkpoint(
        &mut conn,
        &wide_checkpoint(n, 1, false),
        now,
        WriteMode::AsTracked,
    )
    .expect("inserts");
    let sum = "SELECT sum(events)::bigint AS n FROM stream_metrics_minute";
    assert_eq!(count(&mut conn, sum), n as i64);
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM stream_state"),
        n as i64
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM dead_letters"),
        n as i64
    );

    // One more row than is stored, at the end of the last statement: the
    // count check spans the statements, and nothing of it stays.
    let diverged = wide_checkpoint(n + 1, 2, true);
    let err = store::write_checkpoint(&mut conn, &diverged, now, WriteMode::AsTracked)
        .expect_err("an update of a missing row");
    assert!(matches!(err, StoreError::Diverged(_)), "{err}");
    assert_eq!(count(&mut conn, sum), n as i64, "rolled back whole");
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM dead_letters"),
        n as i64
    );
}

/// `offsets` dead letters of `partition`.
fn letters(partition: i32, offsets: std::ops::Range<i64>) -> Vec<DeadLetter> {
    offsets
        .map(|offset| DeadLetter {
            partition,
            offset,
            reason: RejectReason::InvalidJson,
            error: "not JSON".to_owned(),
            payload: b"{".to_vec(),
            key: None,
        })
        .collect()
}

#[test]
fn a_checkpoint_written_again_after_its_commit_adds_no_dead_letter() {
    let (_pg, mut conn) = migrated_database("again");
    let now = Utc::now();
    let all = "SELECT count(*) AS n FROM dead_letters";
    let of_partition =
        |p: i32| format!("SELECT count(*) AS n FROM dead_letters WHERE partition = {p}");

    // Letters of two partitions, below the offsets the checkpoint commits.
    let mut first = one_row_checkpoint(1, false, false);
    first.offsets = [(0, 10), (1, 5)].into_iter().collect();
    first.dead_letters = [letters(0, 3..8), letters(1, 2..4)].concat();
    store::write_checkpoint(&mut conn, &first, now, WriteMode::AsTracked).expect("first");
    assert_eq!(count(&mut conn, all), 7);

    // Its first commit's outcome was unknown, so it is written again: the
    // row's insert is refused, and the upserts skip the stored letters.
    let err = store::write_checkpoint(&mut conn, &first, now, WriteMode::AsTracked)
        .expect_err("a second insert of the row");
    assert!(matches!(err, StoreError::Query(_)), "{err}");
    store::write_checkpoint(&mut conn, &first, now, WriteMode::Upsert).expect("upserts");
    assert_eq!(count(&mut conn, all), 7);

    // A checkpoint of letters alone, written twice as tracked: nothing in
    // it meets a key, and still each letter is stored once.
    let letters_only = Checkpoint {
        group_id: "g".to_owned(),
        topic: "t".to_owned(),
        offsets: [(0, 20)].into_iter().collect(),
        dead_letters: letters(0, 10..13),
        ..Checkpoint::default()
    };
    for _ in 0..2 {
        store::write_checkpoint(&mut conn, &letters_only, now, WriteMode::AsTracked)
            .expect("letters");
    }
    assert_eq!(count(&mut conn, &of_partition(0)), 8);
    assert_eq!(count(&mut conn, &of_partition(1)), 2);

    // Another group's offsets say nothing about this one's letters.
    let other_group = Checkpoint {
        group_id: "h".to_owned(),
        ..letters_only.clone()
    };
    store::write_checkpoint(&mut conn, &other_group, now, WriteMode::AsTracked)
        .expect("another group");
    assert_eq!(count(&mut conn, &of_partition(0)), 11);
}

/// Ids of the dead letters left, in order.
fn letter_ids(conn: &mut PgConnection) -> Vec<i64> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    diesel::sql_query("SELECT id FROM dead_letters ORDER BY id")
        .load::<Id>(conn)
        .expect("ids")
        .into_iter()
        .map(|r| r.id)
        .collect()
}

#[test]
fn dead_letter_retention_walks_ids_and_stops_at_the_first_letter_too_young_to_go() {
    use store::retention::{delete_dead_letters, oldest_dead_letter, Step};
    let step = |removed, next| Step { removed, next };
    let (_pg, mut conn) = migrated_database("letter_retention");
    let cutoff = Utc::now() - chrono::TimeDelta::days(1);
    // An empty table: nothing to delete, and the pass ends.
    assert_eq!(oldest_dead_letter(&mut conn).expect("oldest"), None);
    let empty = delete_dead_letters(&mut conn, 0, cutoff, 3).expect("batch");
    assert_eq!(empty, step(0, None));

    // Ids 1-5 two days old, 6 young (stamped by a clock that was later
    // set back), 7-8 two days old, 9 young.
    diesel::sql_query(
        "INSERT INTO dead_letters (topic, partition, kafka_offset, reason, error, payload, received_at)
         SELECT 't', 0, o, 'late', 'test', '\\x00',
                CASE WHEN o IN (6, 9) THEN now() ELSE now() - interval '2 days' END
         FROM generate_series(1, 9) AS o ORDER BY o",
    )
    .execute(&mut conn)
    .expect("letters");
    let oldest = oldest_dead_letter(&mut conn).expect("oldest");
    assert!(
        oldest.is_some_and(|t| t < cutoff),
        "the first letter by id is old"
    );

    let first = delete_dead_letters(&mut conn, 0, cutoff, 3).expect("batch");
    assert_eq!(first, step(3, Some(3)));
    assert_eq!(letter_ids(&mut conn), [4, 5, 6, 7, 8, 9]);

    // The next batch meets the young letter: the old ones beside it go,
    // and the pass ends there.
    let second = delete_dead_letters(&mut conn, 3, cutoff, 3).expect("batch");
    assert_eq!(second, step(2, None));
    assert_eq!(letter_ids(&mut conn), [6, 7, 8, 9]);

    // Once nothing young stands in the way (here: a later cutoff), the
    // walk goes on to the end of the table. Exactly a batch's worth left:
    // the walk cannot know the table ends there, so one more batch finds
    // nothing and ends the pass.
    let later = Utc::now() + chrono::TimeDelta::days(1);
    let third = delete_dead_letters(&mut conn, 0, later, 2).expect("batch");
    assert_eq!(third, step(2, Some(7)));
    let fourth = delete_dead_letters(&mut conn, 7, later, 2).expect("batch");
    assert_eq!(fourth, step(2, Some(9)));
    let last = delete_dead_letters(&mut conn, 9, later, 2).expect("batch");
    assert_eq!(last, step(0, None));
    assert!(letter_ids(&mut conn).is_empty());
    assert_eq!(oldest_dead_letter(&mut conn).expect("oldest"), None);
}
