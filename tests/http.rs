//! The HTTP API against a real Postgres holding known rows: the exact JSON
//! of every route, every 400/404 case, 503 when the database is down, and
//! the seed's smoke contract.

mod harness;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use harness::{Serve, ServeConfig, Services};
use serde_json::{json, Value};
use streamstats_actors::store;

const ROWS: &str = "
INSERT INTO stream_metrics_minute (window_start, window_end, stream_id, active_viewers, chat_messages,
    donations_cents, events, chat_chars, donations, viewer_joins, viewer_leaves, unique_chatters,
    is_final, updated_at) VALUES
 ('2025-12-20T18:00:00Z', '2025-12-20T18:01:00Z', 'alpha', 3, 10, 1250, 20, 100, 2, 5, 2, 4, true,  '2025-12-20T18:11:00Z'),
 ('2025-12-20T18:01:00Z', '2025-12-20T18:02:00Z', 'alpha', 5,  2,   10,  4,   9, 1, 1, 0, 2, false, '2025-12-20T18:11:00.5Z'),
 ('2025-12-20T18:01:00Z', '2025-12-20T18:02:00Z', 'beta',  9,  1, 99999, 3,  1, 1, 1, 0, 1, false, '2025-12-20T18:11:00Z'),
 ('2025-12-20T17:30:00Z', '2025-12-20T17:31:00Z', 'beta', 50, 100,   0, 150, 700, 0, 50, 0, 30, true, '2025-12-20T17:45:00Z');
INSERT INTO stream_state (stream_id, is_live, active_viewers, last_event_at, updated_at) VALUES
 ('alpha', true, 5, '2025-12-20T18:01:30Z', '2025-12-20T18:11:00Z'),
 ('beta', false, 0, '2025-12-20T18:01:10Z', '2025-12-20T18:11:00Z');
";

#[allow(clippy::too_many_arguments)]
fn minute(
    start: &str,
    end: &str,
    stream: &str,
    viewers: i64,
    chat: i64,
    usd: f64,
    events: i64,
    chars: i64,
    donations: i64,
    joins: i64,
    leaves: i64,
    chatters: i64,
    is_final: bool,
    updated: &str,
) -> Value {
    json!({
        "window_start": start, "window_end": end, "stream_id": stream,
        "active_viewers": viewers, "chat_messages": chat, "donations_usd": usd,
        "events": events, "chat_chars": chars, "donations": donations,
        "viewer_joins": joins, "viewer_leaves": leaves, "unique_chatters": chatters,
        "is_final": is_final, "updated_at": updated,
    })
}

fn alpha_1800() -> Value {
    minute(
        "2025-12-20T18:00:00Z",
        "2025-12-20T18:01:00Z",
        "alpha",
        3,
        10,
        12.5,
        20,
        100,
        2,
        5,
        2,
        4,
        true,
        "2025-12-20T18:11:00Z",
    )
}
fn alpha_1801() -> Value {
    minute(
        "2025-12-20T18:01:00Z",
        "2025-12-20T18:02:00Z",
        "alpha",
        5,
        2,
        0.1,
        4,
        9,
        1,
        1,
        0,
        2,
        false,
        "2025-12-20T18:11:00.500Z",
    )
}
fn beta_1801() -> Value {
    minute(
        "2025-12-20T18:01:00Z",
        "2025-12-20T18:02:00Z",
        "beta",
        9,
        1,
        999.99,
        3,
        1,
        1,
        1,
        0,
        1,
        false,
        "2025-12-20T18:11:00Z",
    )
}
fn beta_1730() -> Value {
    minute(
        "2025-12-20T17:30:00Z",
        "2025-12-20T17:31:00Z",
        "beta",
        50,
        100,
        0.0,
        150,
        700,
        0,
        50,
        0,
        30,
        true,
        "2025-12-20T17:45:00Z",
    )
}

fn get_json(serve: &Serve, path: &str) -> (u16, Value) {
    let (status, body) = serve.get(path);
    let value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
    (status, value)
}

fn assert_bad(serve: &Serve, path: &str, param: &str) {
    let (status, body) = get_json(serve, path);
    assert_eq!(status, 400, "{path}: {body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(param),
        "{path}: error {error:?} does not name {param}"
    );
}

#[test]
fn routes_answer_exact_json_and_clear_errors() {
    let mut services = Services::start();
    let topic = services.broker.create_topic("http", 1);
    let db = services.postgres.create_database("http");
    let mut serve = Serve::start(ServeConfig::new(&db, &services.broker, &topic));
    {
        let mut conn = PgConnection::establish(&db).expect("connect");
        store::run_migrations(&mut conn).expect("migrated");
        conn.batch_execute(ROWS).expect("known rows");
        store::rebuild_latest(&mut conn).expect("stream_latest rebuilt");
    }

    // The seed's smoke contract.
    assert_eq!(get_json(&serve, "/health"), (200, json!({"ok": true})));
    let (status, metrics) = get_json(&serve, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        metrics,
        json!({
            "latest_window_start": "2025-12-20T18:01:00Z",
            "minutes": 15,
            "rows": [alpha_1801(), beta_1801(), alpha_1800()],
        })
    );
    let (_, raw) = serve.get("/metrics?stream_id=beta&minutes=1");
    assert!(
        raw.contains(r#""donations_usd":999.99,"#),
        "money is exact decimal text: {raw}"
    );

    assert_eq!(
        get_json(&serve, "/metrics?minutes=60&limit=2&stream_id=beta").1["rows"],
        json!([beta_1801(), beta_1730()])
    );
    assert_eq!(
        get_json(&serve, "/metrics/latest"),
        (
            200,
            json!({"latest_window_start": "2025-12-20T18:01:00Z", "rows": [alpha_1801(), beta_1801()],
                   "truncated": false, "next_after": null})
        )
    );
    assert_eq!(
        get_json(&serve, "/streams/top?by=donations_usd&minutes=60"),
        (
            200,
            json!({
                "by": "donations_usd", "minutes": 60, "n": 10,
                "latest_window_start": "2025-12-20T18:01:00Z",
                "rows": [
                    {"stream_id": "beta", "active_viewers": 50, "chat_messages": 101, "donations_usd": 999.99},
                    {"stream_id": "alpha", "active_viewers": 5, "chat_messages": 12, "donations_usd": 12.6},
                ],
            })
        )
    );
    assert_eq!(
        get_json(&serve, "/streams/top?limit=1").1["rows"],
        json!([{"stream_id": "beta", "active_viewers": 9, "chat_messages": 1, "donations_usd": 999.99}])
    );
    assert_eq!(
        get_json(&serve, "/streams/top?by=chat_messages&n=2").1["rows"][0]["stream_id"],
        json!("alpha")
    );
    assert_eq!(
        get_json(&serve, "/metrics/latest?limit=1"),
        (
            200,
            json!({"latest_window_start": "2025-12-20T18:01:00Z", "rows": [alpha_1801()],
                   "truncated": true, "next_after": "alpha"})
        )
    );
    assert_eq!(
        get_json(&serve, "/metrics/latest?limit=1&after=alpha").1["rows"],
        json!([beta_1801()])
    );
    assert_eq!(
        get_json(&serve, "/streams"),
        (
            200,
            json!({"streams": [
                {"stream_id": "alpha", "is_live": true, "active_viewers": 5,
                 "last_event_at": "2025-12-20T18:01:30Z", "updated_at": "2025-12-20T18:11:00Z"},
                {"stream_id": "beta", "is_live": false, "active_viewers": 0,
                 "last_event_at": "2025-12-20T18:01:10Z", "updated_at": "2025-12-20T18:11:00Z"},
            ], "truncated": false, "next_after": null})
        )
    );
    assert_eq!(
        get_json(&serve, "/streams?limit=1&after=alpha").1,
        json!({"streams": [
            {"stream_id": "beta", "is_live": false, "active_viewers": 0,
             "last_event_at": "2025-12-20T18:01:10Z", "updated_at": "2025-12-20T18:11:00Z"},
        ], "truncated": false, "next_after": null})
    );
    assert_eq!(
        get_json(&serve, "/streams/alpha/minutes"),
        (
            200,
            json!({
                "stream_id": "alpha", "from": "2025-12-20T17:02:00Z", "to": "2025-12-20T18:02:00Z",
                "rows": [alpha_1800(), alpha_1801()],
            })
        )
    );
    assert_eq!(
        get_json(
            &serve,
            "/streams/alpha/minutes?from=2025-12-20T18:01:00Z&to=2025-12-20T19:02:00%2B01:00"
        )
        .1,
        json!({
            "stream_id": "alpha", "from": "2025-12-20T18:01:00Z", "to": "2025-12-20T18:02:00Z",
            "rows": [alpha_1801()],
        })
    );
    assert_eq!(
        get_json(
            &serve,
            "/streams/alpha/minutes?from=2025-12-20T18:01:00Z&to=2025-12-20T18:02:00Z"
        )
        .1["rows"],
        json!([alpha_1801()])
    );

    // Bad parameters: 400 naming the parameter.
    for (path, param) in [
        ("/metrics?minutes=abc", "minutes"),
        ("/metrics?minutes=0", "minutes"),
        ("/metrics?minutes=-5", "minutes"),
        ("/metrics?minutes=100000", "minutes"),
        ("/metrics?limit=1.5", "limit"),
        ("/metrics?limit=100000", "limit"),
        ("/metrics?stream_id=", "stream_id"),
        ("/streams/top?by=followers", "by"),
        ("/streams/top?n=0", "n"),
        ("/streams/top?limit=-1", "limit"),
        ("/streams/top?minutes=x", "minutes"),
        ("/streams/alpha/minutes?from=yesterday", "from"),
        ("/streams/alpha/minutes?to=2025-12-20", "to"),
        (
            "/streams/alpha/minutes?from=2025-12-20T19:00:00Z&to=2025-12-20T18:00:00Z",
            "from",
        ),
        (
            "/streams/alpha/minutes?from=2025-12-01T00:00:00Z&to=2025-12-20T18:00:00Z",
            "from",
        ),
        ("/metrics?minutes=%ZZ", "minutes"),
        ("/streams/%00/minutes", "id"),
        ("/metrics?stream_id=a%00", "stream_id"),
        ("/metrics/latest?limit=0", "limit"),
        ("/streams?after=", "after"),
    ] {
        assert_bad(&serve, path, param);
    }

    // Unknown routes and streams: 404 JSON.
    let (status, body) = get_json(&serve, "/nope");
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap_or_default().contains("/nope"));
    let (status, body) = get_json(&serve, "/streams/ghost/minutes");
    assert_eq!((status, body["error"].is_string()), (404, true));

    // Path labels are route templates, never raw ids.
    let (_, prom) = serve.get("/prometheus");
    assert!(prom
        .lines()
        .any(|l| l.starts_with("api_http_requests_total")
            && l.contains(r#"path="/streams/{id}/minutes""#)
            && l.contains(r#"status="200""#)));
    assert!(!prom.contains("/streams/alpha/minutes"));
    assert!(prom
        .lines()
        .any(|l| l.starts_with("api_http_request_duration_seconds_bucket")));
    assert!(prom.lines().any(|l| l == "api_db_ok 1"));

    // Database down: /health and the query routes answer 503, no hang
    // (once a cached answer's time-to-live, one checkpoint interval, ran out).
    services.postgres.stop_immediate();
    let (status, body) = get_json(&serve, "/health");
    assert_eq!((status, &body["ok"]), (503, &json!(false)));
    assert!(body["error"].is_string());
    for path in [
        "/metrics",
        "/metrics/latest",
        "/streams",
        "/streams/top",
        "/streams/alpha/minutes",
    ] {
        let (status, body) = harness::wait_for(path, std::time::Duration::from_secs(10), || {
            let (status, body) = get_json(&serve, path);
            (status != 200).then_some((status, body))
        });
        assert_eq!(status, 503, "{path}: {body}");
        assert!(body["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("database unavailable"));
    }
    let (status, ready) = get_json(&serve, "/ready");
    assert_eq!((status, &ready["database"]), (503, &json!(false)));
    assert!(serve
        .get("/prometheus")
        .1
        .lines()
        .any(|l| l == "api_db_ok 0"));
    serve.terminate();
}
