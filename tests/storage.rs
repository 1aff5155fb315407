//! Storage against a real Postgres: the embedded migrations apply, are
//! idempotent, revert, and apply again; money is exact in SQL.

mod harness;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use harness::Postgres;
use streamstats_actors::store;

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
        "window_chatters",
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
    let pg = Postgres::start();
    let url = pg.create_database("money");
    let mut conn = PgConnection::establish(&url).expect("connect");
    store::run_migrations(&mut conn).expect("apply");
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
