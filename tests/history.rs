//! Queries whose cost does not grow with history (issue 11): the maintained
//! newest window of each stream (`stream_state.latest_window_start`) equals
//! the newest row of every stream of ground truth, pages return every
//! stream exactly once, answers are cached per commit,
//! retention deletes exactly what is older than its cutoff, and a parameter
//! Postgres cannot hold is a 400.

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use harness::{
    committed_messages, wait_for, wait_for_truth, Scenario, Serve, ServeConfig, Services,
};
use serde_json::Value;
use streamstats_actors::store;
use streamstats_actors::truth::Expected;
use streamstats_actors::window::WindowRow;

const PARTITIONS: i32 = 3;
const DRAIN: Duration = Duration::from_secs(240);

fn get_json(serve: &Serve, path: &str) -> (u16, Value) {
    let (status, body) = serve.get(path);
    let value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
    (status, value)
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn usd(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// The fields of a window row the API shows, as comparable text.
fn row_key(r: &WindowRow) -> String {
    format!(
        "{} {} v={} e={} j={} l={} c={} cc={} u={} d={} usd={} f={}",
        r.stream_id,
        time(r.window_start),
        r.active_viewers,
        r.events,
        r.viewer_joins,
        r.viewer_leaves,
        r.chat_messages,
        r.chat_chars,
        r.unique_chatters,
        r.donations,
        usd(r.donation_cents),
        r.is_final
    )
}

/// The same text from a JSON row of the API.
fn json_key(r: &Value) -> String {
    let n = |f: &str| r[f].as_i64().unwrap_or_else(|| panic!("{f} in {r}"));
    let usd = r["donations_usd"]
        .as_f64()
        .map(|v| format!("{v:.2}"))
        .unwrap_or_default();
    format!(
        "{} {} v={} e={} j={} l={} c={} cc={} u={} d={} usd={} f={}",
        r["stream_id"].as_str().unwrap_or_default(),
        r["window_start"].as_str().unwrap_or_default(),
        n("active_viewers"),
        n("events"),
        n("viewer_joins"),
        n("viewer_leaves"),
        n("chat_messages"),
        n("chat_chars"),
        n("unique_chatters"),
        n("donations"),
        usd,
        r["is_final"]
    )
}

/// The newest row of every stream, by stream id.
fn latest_per_stream(rows: &[WindowRow]) -> Vec<String> {
    let mut newest: BTreeMap<&str, &WindowRow> = BTreeMap::new();
    for r in rows {
        let slot = newest.entry(&r.stream_id).or_insert(r);
        if r.window_start > slot.window_start {
            *slot = r;
        }
    }
    newest.values().map(|r| row_key(r)).collect()
}

/// Every row of `/metrics/latest` in one page, as comparable text.
fn api_latest(serve: &Serve) -> Vec<String> {
    let (status, page) = get_json(serve, "/metrics/latest?limit=1000");
    assert_eq!(status, 200, "{page}");
    page["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(json_key)
        .collect()
}

/// Walks a paged route (`/metrics/latest` or `/streams`) `limit` at a time
/// and returns the stream ids of every page.
fn walk_pages(serve: &Serve, route: &str, field: &str, limit: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => format!("{route}?limit={limit}"),
            Some(a) => format!("{route}?limit={limit}&after={a}"),
        };
        let (status, page) = get_json(serve, &path);
        assert_eq!(status, 200, "{path}: {page}");
        let ids: Vec<String> = page[field]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r["stream_id"].as_str().expect("stream_id").to_owned())
            .collect();
        let truncated = page["truncated"].as_bool().expect("truncated");
        assert!(ids.len() <= limit, "{path}: {} rows", ids.len());
        if truncated {
            assert_eq!(ids.len(), limit, "{path}: a cut page is full");
            assert_eq!(page["next_after"].as_str(), ids.last().map(String::as_str));
            after = ids.last().cloned();
            pages.push(ids);
        } else {
            assert!(page["next_after"].is_null(), "{path}: {page}");
            pages.push(ids);
            return pages;
        }
        assert!(pages.len() < 1_000, "{route} pages never end");
    }
}

fn committed_checkpoints(serve: &Serve) -> f64 {
    serve
        .metric("streamstats_checkpoints_total{outcome=\"committed\"}")
        .unwrap_or(0.0)
}

#[test]
fn latest_pages_and_cache_follow_ground_truth_commit_by_commit() {
    let services = Services::start();
    let topic = services.broker.create_topic("history", PARTITIONS);
    let db = services.postgres.create_database("history");
    // Answers live an hour unless a commit of this process replaces them.
    let mut serve = Serve::start(
        ServeConfig::new(&db, &services.broker, &topic).with_env("API_CACHE_TTL", "1h"),
    );
    let (status, empty) = get_json(&serve, "/metrics/latest");
    assert_eq!(status, 200);
    assert_eq!(
        empty,
        serde_json::json!({"latest_window_start": null, "rows": [], "truncated": false, "next_after": null})
    );

    let expected = Scenario::with_trouble(20_000).produce(&services.broker, &topic, PARTITIONS);
    wait_for_truth(&mut serve, &expected, DRAIN);

    // The cached empty answer was replaced by commits: /metrics/latest is
    // the newest row of every stream of ground truth, field by field.
    let want = latest_per_stream(&expected.rows);
    assert_eq!(want.len(), 25);
    wait_for("/metrics/latest to equal ground truth", DRAIN, || {
        (api_latest(&serve) == want).then_some(())
    });
    let newest = expected.rows.iter().map(|r| r.window_start).max();
    assert_eq!(
        get_json(&serve, "/metrics/latest").1["latest_window_start"],
        Value::from(newest.map(time))
    );

    // Pages of 7: every stream exactly once, in order, cut where it says.
    let ids: Vec<String> = expected
        .stream_state
        .iter()
        .map(|s| s.stream_id.clone())
        .collect();
    for (route, field) in [("/metrics/latest", "rows"), ("/streams", "streams")] {
        let pages = walk_pages(&serve, route, field, 7);
        assert_eq!(pages.len(), 4, "{route}: 25 streams in pages of 7");
        assert_eq!(pages.concat(), ids, "{route}");
        assert_eq!(walk_pages(&serve, route, field, 25).len(), 1, "{route}");
    }

    // Without a commit of this process the answer stays the cached one,
    // even though the database changed under it...
    let url = serve.cfg.database_url.clone();
    let mut conn = PgConnection::establish(&url).expect("connect");
    let direct = "INSERT INTO stream_metrics_minute (window_start, window_end, stream_id,
        active_viewers, chat_messages, donations_cents, events, chat_chars, donations,
        viewer_joins, viewer_leaves, unique_chatters, is_final)
        VALUES ('2030-01-01T00:00:00Z', '2030-01-01T00:01:00Z', 'zz-direct', 1, 0, 0, 1, 0, 0, 1, 0, 0, false)";
    let cached = api_latest(&serve);
    let mut proved = false;
    for _ in 0..20 {
        let before = committed_checkpoints(&serve);
        conn.batch_execute(direct).expect("direct row");
        store::rebuild_latest(&mut conn).expect("rebuilt");
        let answer = api_latest(&serve);
        if committed_checkpoints(&serve) == before {
            assert_eq!(answer, cached, "an answer changed without a commit");
            proved = true;
            break;
        }
        // A checkpoint committed meanwhile; undo and try again.
        conn.batch_execute("DELETE FROM stream_metrics_minute WHERE stream_id = 'zz-direct'")
            .expect("undo");
        store::rebuild_latest(&mut conn).expect("rebuilt");
        wait_for("the cache to catch up", DRAIN, || {
            (api_latest(&serve) == cached).then_some(())
        });
    }
    assert!(proved, "a checkpoint committed during every attempt");
    // ...and the next commit (an idle checkpoint, every 200 ms) brings it.
    wait_for("the next commit to refresh the answer", DRAIN, || {
        api_latest(&serve)
            .iter()
            .any(|r| r.starts_with("zz-direct "))
            .then_some(())
    });

    // A failing query with the database reachable is a 500, not a 503
    // (a limit asked for the first time, so nothing cached answers it).
    conn.batch_execute("ALTER TABLE stream_state RENAME TO stream_state_away")
        .expect("rename");
    let (status, body) = get_json(&serve, "/streams?limit=999");
    conn.batch_execute("ALTER TABLE stream_state_away RENAME TO stream_state")
        .expect("rename back");
    assert_eq!(status, 500, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .starts_with("internal error"));
    assert_eq!(get_json(&serve, "/health").0, 200);
    wait_for(
        "the cause of the 500 in the log",
        Duration::from_secs(10),
        || {
            serve
                .process
                .log_tail()
                .contains("relation \"stream_state\" does not exist")
                .then_some(())
        },
    );

    // Parameters Postgres cannot hold are 400s naming them.
    for (path, param) in [
        ("/streams/%00/minutes", "id"),
        ("/streams/a%00b/minutes", "id"),
        ("/metrics?stream_id=%00", "stream_id"),
        ("/metrics/latest?after=x%00", "after"),
        ("/streams?after=%00", "after"),
        ("/metrics/latest?limit=0", "limit"),
        ("/streams?limit=1001", "limit"),
    ] {
        let (status, body) = get_json(&serve, path);
        assert_eq!(status, 400, "{path}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(param), "{path}: {error}");
    }
    assert!(get_json(&serve, "/streams/%00/minutes").1["error"]
        .as_str()
        .unwrap_or_default()
        .contains("NUL"));
    serve.terminate();
}

/// Synthetic rows: streams `r0`..`r4`, one row a minute over
/// `[start, start + minutes)` counted back from the current minute.
fn synthetic_rows(back_from_now: &str, minutes: i64) -> String {
    format!(
        "INSERT INTO stream_metrics_minute (window_start, window_end, stream_id, active_viewers,
            chat_messages, donations_cents, events, chat_chars, donations, viewer_joins,
            viewer_leaves, unique_chatters, is_final)
         SELECT t, t + interval '1 minute', 'r' || s, s, m, m * 10 + s, m + 1, 0, 1, 0, 0, 0, true
         FROM generate_series(0, 4) AS s,
              generate_series(1, {minutes}) AS m,
              LATERAL (SELECT date_trunc('minute', now()) - interval '{back_from_now}'
                              + m * interval '1 minute' AS t) AS w;"
    )
}

#[test]
fn retention_deletes_exactly_what_is_older_than_the_cutoff_while_the_pipeline_runs() {
    let services = Services::start();
    let topic = services.broker.create_topic("retention", PARTITIONS);
    let db = services.postgres.create_database("retention");
    let mut conn = PgConnection::establish(&db).expect("connect");
    store::run_migrations(&mut conn).expect("migrated");
    // 300 rows two to three hours old (past RETENTION=1h), 150 rows of the
    // last half hour (kept), none in between, so the cutoff moving with the
    // clock cannot change the answer while the test runs.
    conn.batch_execute(&synthetic_rows("3 hours", 60))
        .expect("old rows");
    conn.batch_execute(&synthetic_rows("31 minutes", 30))
        .expect("recent rows");
    conn.batch_execute(
        "INSERT INTO dead_letters (topic, partition, kafka_offset, reason, error, payload, received_at)
         SELECT 'elsewhere', 0, o, CASE WHEN o < 3 THEN 'old' ELSE 'recent' END, 'test', '\\x00',
                CASE WHEN o < 3 THEN now() - interval '2 hours' ELSE now() END
         FROM generate_series(0, 4) AS o",
    )
    .expect("dead letters");
    store::rebuild_latest(&mut conn).expect("rebuilt");
    let keep = store::load_rows(&mut conn)
        .expect("rows")
        .into_iter()
        .filter(|r| r.window_start > Utc::now() - TimeDelta::hours(1))
        .collect::<Vec<_>>();
    assert_eq!(keep.len(), 150);

    // Virtual-clock events two hours old flow through the pipeline at the
    // same time: their windows are written, then trimmed too.
    let start = (Utc::now() - TimeDelta::hours(2)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut scenario = Scenario::with_trouble(5_000);
    scenario.start = Box::leak(start.into_boxed_str());
    let generated: Expected = scenario.produce(&services.broker, &topic, PARTITIONS);
    let mut serve = Serve::start(
        ServeConfig::new(&db, &services.broker, &topic)
            .with_env("RETENTION", "1h")
            .with_env("DEAD_LETTER_RETENTION", "1h")
            .with_env("RETENTION_INTERVAL", "200ms"),
    );
    wait_for("the run to be committed", DRAIN, || {
        serve.process.assert_running();
        (committed_messages(&db) == generated.messages as i64).then_some(())
    });

    let mut want_letters = generated.dead_letters.clone();
    want_letters.insert("recent".to_owned(), 2);
    let want_latest = latest_per_stream(&keep);
    wait_for("retention to leave exactly the recent rows", DRAIN, || {
        serve.process.assert_running();
        let got = harness::actual(&db);
        (got.rows == keep && got.dead_letters == want_letters && api_latest(&serve) == want_latest)
            .then_some(())
    });
    // Streams whose rows are all gone no longer have a newest window, so
    // /metrics/latest does not walk them.
    let with_latest: i64 = diesel::sql_query(
        "SELECT count(*)::bigint AS n FROM stream_state WHERE latest_window_start IS NOT NULL",
    )
    .get_result::<Count>(&mut conn)
    .expect("count")
    .n;
    assert_eq!(
        with_latest,
        want_latest.len() as i64,
        "streams with a newest window"
    );
    assert_eq!(
        serve.metric("streamstats_retention_rows_removed_total{table=\"dead_letters\"}"),
        Some(3.0)
    );
    let removed = serve
        .metric("streamstats_retention_rows_removed_total{table=\"stream_metrics_minute\"}")
        .unwrap_or(0.0);
    assert!(removed >= 300.0 + 1.0, "removed {removed}");
    let age = serve
        .metric("streamstats_retention_oldest_row_age_seconds{table=\"stream_metrics_minute\"}")
        .unwrap_or(f64::MAX);
    assert!(
        (29.0 * 60.0..3_600.0).contains(&age),
        "oldest row age {age}"
    );
    serve.terminate();
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Buckets of `streamstats_checkpoint_duration_seconds` (upper bound,
/// cumulative count) from one scrape.
fn checkpoint_buckets(serve: &Serve) -> Vec<(f64, f64)> {
    let (_, body) = serve.get("/prometheus");
    body.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("streamstats_checkpoint_duration_seconds_bucket{le=\"")?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The `q` quantile of the checkpoints between two scrapes, interpolated
/// within the bucket as Prometheus' `histogram_quantile` does; and how many.
fn quantile_between(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> (f64, f64) {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .zip(before)
        .map(|((le, a), (_, b))| (*le, a - b))
        .collect();
    let total = delta.last().map_or(0.0, |(_, n)| *n);
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for (le, n) in &delta {
        if *n >= rank {
            if le.is_infinite() {
                return (lower.0, total);
            }
            let within = (rank - lower.1) / (n - lower.1).max(f64::MIN_POSITIVE);
            return (lower.0 + (le - lower.0) * within, total);
        }
        lower = (*le, *n);
    }
    (f64::NAN, total)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Retention trimming a large table while the pipeline runs: ROWS window
/// rows (default 10M: 1,000 streams x 10,000 minutes, all older than 30
/// days) and a live generator at RATE events/s (default 2,000, 100
/// streams). `serve` runs first with retention that deletes nothing
/// (baseline, BASELINE seconds), then with `RETENTION=30d` until the table
/// is trimmed. Prints the checkpoint duration p99 of both phases.
///
/// `ROWS=10000000 cargo test --release --test history -- --ignored --nocapture`
#[test]
#[ignore = "a benchmark: minutes of work; run by hand"]
fn retention_bench_large_table_while_the_pipeline_runs() {
    let rows = env_u64("ROWS", 10_000_000);
    let rate = env_u64("RATE", 2_000);
    let baseline = Duration::from_secs(env_u64("BASELINE", 60));
    let streams = 1_000u64;
    let minutes = rows.div_ceil(streams);
    let services = Services::start();
    let topic = services.broker.create_topic("retention_bench", PARTITIONS);
    let db = services.postgres.create_database("retention_bench");
    let mut conn = PgConnection::establish(&db).expect("connect");
    store::run_migrations(&mut conn).expect("migrated");
    let filling = std::time::Instant::now();
    conn.batch_execute(&format!(
        "INSERT INTO stream_metrics_minute (window_start, window_end, stream_id, active_viewers,
            chat_messages, donations_cents, events, chat_chars, donations, viewer_joins,
            viewer_leaves, unique_chatters, is_final)
         SELECT t, t + interval '1 minute', 'old-' || s, s % 500, m % 50, (s + m) % 1000,
                10, 0, 0, 0, 0, 0, true
         FROM generate_series(1, {minutes}) AS m,
              generate_series(0, {streams} - 1) AS s,
              LATERAL (SELECT date_trunc('minute', now()) - interval '40 days'
                              - m * interval '1 minute' AS t) AS w"
    ))
    .expect("filled");
    conn.batch_execute("VACUUM ANALYZE stream_metrics_minute")
        .expect("vacuumed");
    store::rebuild_latest(&mut conn).expect("rebuilt");
    let total = streams * minutes;
    println!(
        "filled {total} rows ({streams} streams x {minutes} minutes, 40+ days old) in {:.0} s",
        filling.elapsed().as_secs_f64()
    );

    let mut producer = std::process::Command::new(env!("CARGO_BIN_EXE_streamstats"))
        .args(["generate", "--kafka-brokers", &services.broker.bootstrap()])
        .args([
            "--kafka-topic",
            &topic,
            "--partitions",
            &PARTITIONS.to_string(),
        ])
        .args(["--rate", &rate.to_string(), "--streams", "100"])
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("generator starts");
    let cfg = |retention: &str| {
        ServeConfig::new(&db, &services.broker, &topic)
            .with_env("CHECKPOINT_INTERVAL", "1s")
            .with_env("RETENTION", retention)
            .with_env("RETENTION_INTERVAL", "10s")
    };

    // Phase 1: retention on, but nothing is old enough (100 years).
    let mut serve = Serve::start(cfg("36500d"));
    std::thread::sleep(Duration::from_secs(10)); // catch-up after start, not measured
    let before = checkpoint_buckets(&serve);
    std::thread::sleep(baseline);
    let (p99_off, n_off) = quantile_between(&before, &checkpoint_buckets(&serve), 0.99);
    serve.terminate();

    // Phase 2: RETENTION=30d; the first pass starts 10 s after start.
    let cfg2 = ServeConfig {
        group_id: serve.cfg.group_id.clone(),
        ..cfg("30d")
    };
    drop(serve);
    let mut serve = Serve::start(cfg2);
    std::thread::sleep(Duration::from_secs(8));
    let before = checkpoint_buckets(&serve);
    let trimming = std::time::Instant::now();
    let removed = |serve: &Serve| {
        serve
            .metric("streamstats_retention_rows_removed_total{table=\"stream_metrics_minute\"}")
            .unwrap_or(0.0)
    };
    let mut peak_rss = 0;
    wait_for(
        "retention to trim the table",
        Duration::from_secs(3_600),
        || {
            serve.process.assert_running();
            peak_rss = peak_rss.max(harness::memory_kib(serve.process.pid(), "VmRSS"));
            (removed(&serve) >= total as f64).then_some(())
        },
    );
    let took = trimming.elapsed().as_secs_f64() - 2.0;
    let (p99_on, n_on) = quantile_between(&before, &checkpoint_buckets(&serve), 0.99);
    let left: i64 = diesel::sql_query(
        "SELECT count(*)::bigint AS n FROM stream_metrics_minute WHERE stream_id LIKE 'old-%'",
    )
    .get_result::<Count>(&mut conn)
    .expect("count")
    .n;
    let _ = producer.kill();
    let _ = producer.wait();
    println!("generator                      {rate} events/s, 100 streams, live clock");
    println!(
        "checkpoint p99 without trimming {:.1} ms over {n_off} checkpoints",
        p99_off * 1e3
    );
    println!(
        "checkpoint p99 while trimming   {:.1} ms over {n_on} checkpoints",
        p99_on * 1e3
    );
    println!("ratio                           {:.2}", p99_on / p99_off);
    println!(
        "trimmed                         {total} rows in {took:.0} s ({:.0} rows/s)",
        total as f64 / took
    );
    println!("old rows left                   {left}");
    println!("serve peak RSS while trimming   {peak_rss} KiB");
    assert_eq!(left, 0);
}
