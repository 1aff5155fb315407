//! The dashboard at `/` in a real browser (Debian's headless Chromium)
//! against a running `serve` with generated data: the charts hold the
//! stream's minutes, the top table ranks the streams the ground truth
//! ranks, a hostile stream id and an HTML payload render as text, open
//! windows are marked, and with the database down the page says so. Also
//! the exact answers of `/dead_letters` and of the embedded assets.

mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use harness::{wait_for_truth, Broker, Scenario, Serve, ServeConfig, Services};
use serde_json::{json, Value};
use streamstats_actors::window::minute_of;

/// A stream id that is also markup.
const HOSTILE_STREAM: &str = "<img src=x onerror=alert(1)>";
/// A malformed message that is also markup.
const HTML_PAYLOAD: &str =
    r#"<b id="injected-by-payload">bold</b><script>document.title="injected"</script>"#;

// ---- the browser ------------------------------------------------------

/// The Chromium binary: `$CHROMIUM_BIN`, else `chromium` on the PATH.
fn chromium() -> PathBuf {
    if let Ok(bin) = std::env::var("CHROMIUM_BIN") {
        return PathBuf::from(bin);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("chromium"))
        .find(|bin| bin.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium is not installed: run scripts/install-deps.sh (Debian package \
                 `chromium`) or set CHROMIUM_BIN; the dashboard test needs a real browser"
            )
        })
}

/// Runs headless Chromium on `url` with a fresh profile, for at most
/// `budget_ms` of page (virtual) time, with `output` naming what to write
/// (`--dump-dom` or `--screenshot=...`). Returns stdout.
fn run_chromium(url: &str, budget_ms: u32, output: &str) -> String {
    let profile = std::env::temp_dir().join(harness::unique_name("streamstats-chromium"));
    std::fs::create_dir_all(&profile).expect("profile dir is creatable");
    // `timeout` bounds a hung browser; setpriv kills it with the test.
    let out = Command::new("setpriv")
        .args(["--pdeathsig=KILL", "--", "timeout", "-k", "5", "90"])
        .arg(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--window-size=1400,1750",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg(output)
        .arg(url)
        .output()
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Dumps the rendered DOM of `url` until `check` accepts it, failing with
/// the last reason and DOM after `timeout`.
fn wait_for_dom<T>(
    url: &str,
    timeout: Duration,
    check: impl Fn(&Dom) -> Result<T, String>,
) -> (Dom, T) {
    let deadline = Instant::now() + timeout;
    loop {
        let dom = Dom(run_chromium(url, 8_000, "--dump-dom"));
        match check(&dom) {
            Ok(v) => return (dom, v),
            Err(why) if Instant::now() > deadline => {
                panic!(
                    "the dashboard at {url} never showed what was expected: {why}\nDOM:\n{}",
                    dom.0
                )
            }
            Err(_) => {}
        }
    }
}

/// A serialized DOM, read with the few patterns the page guarantees.
struct Dom(String);

impl Dom {
    /// Value of `attr` on the element with `id`.
    fn attr(&self, id: &str, attr: &str) -> Option<String> {
        let start = self.0.find(&format!(" id=\"{id}\""))?;
        let tag_start = self.0[..start].rfind('<')?;
        let tag_end = start + self.0[start..].find('>')?;
        let tag = &self.0[tag_start..tag_end];
        let at = tag.find(&format!(" {attr}=\""))? + attr.len() + 3;
        let len = tag[at..].find('"')?;
        Some(unescape(&tag[at..at + len]))
    }

    /// Text of every `<tag ...class="class"...>text</tag>`, in order.
    fn texts(&self, tag: &str, class: &str) -> Vec<String> {
        let mut out = Vec::new();
        let open = format!("<{tag} ");
        let close = format!("</{tag}>");
        let mut rest = self.0.as_str();
        while let Some(i) = rest.find(&open) {
            rest = &rest[i..];
            let Some(gt) = rest.find('>') else { break };
            let head = &rest[..gt];
            let Some(end) = rest.find(&close) else { break };
            if head.contains(&format!("class=\"{class}\"")) {
                out.push(unescape(&strip_tags(&rest[gt + 1..end])));
            }
            rest = &rest[gt..];
        }
        out
    }

    /// Text of the element with `id` (no nested element of its own tag).
    fn text_of(&self, id: &str) -> Option<String> {
        let start = self.0.find(&format!(" id=\"{id}\""))?;
        let tag_start = self.0[..start].rfind('<')?;
        let name: String = self.0[tag_start + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let gt = start + self.0[start..].find('>')?;
        let end = gt + self.0[gt..].find(&format!("</{name}>"))?;
        Some(unescape(&strip_tags(&self.0[gt + 1..end])))
    }

    fn count(&self, needle: &str) -> usize {
        self.0.matches(needle).count()
    }

    fn attr_num(&self, id: &str, attr: &str) -> Result<usize, String> {
        self.attr(id, attr)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("#{id} has no numeric {attr}"))
    }
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---- data -------------------------------------------------------------

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn event(id: &str, ts: DateTime<Utc>, stream: &str, body: &str) -> Vec<u8> {
    let stream = serde_json::to_string(stream).expect("a string serializes");
    format!(
        r#"{{"event_id":"{id}","ts":"{}","stream_id":{stream},{body}}}"#,
        rfc3339(ts)
    )
    .into_bytes()
}

/// One minute of one stream: `(window_start, stream_id, active_viewers)`.
type Peak = (DateTime<Utc>, String, i64);

/// Streams ranked like `/streams/top?by=active_viewers`: peak viewers over
/// windows starting at or after `since`, ties by stream id.
fn ranking(minutes: &[Peak], since: DateTime<Utc>, n: usize) -> Vec<(String, i64)> {
    let mut peak: BTreeMap<&str, i64> = BTreeMap::new();
    for (_, stream, viewers) in minutes.iter().filter(|m| m.0 >= since) {
        let p = peak.entry(stream.as_str()).or_insert(0);
        *p = (*p).max(*viewers);
    }
    let mut ranked: Vec<(&str, i64)> = peak.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    ranked
        .into_iter()
        .take(n)
        .map(|(s, v)| (s.to_owned(), v))
        .collect()
}

/// The hostile stream's two minutes: `viewers` joins in the minute before
/// `last` and a chat message; two leaves and a 12.34 donation in `last`.
fn hostile_stream(last: DateTime<Utc>, viewers: i64) -> (Vec<Vec<u8>>, Vec<Peak>) {
    let first = last - TimeDelta::minutes(1);
    let mut messages = Vec::new();
    for u in 0..viewers {
        let ts = first + TimeDelta::milliseconds(u * 55_000 / viewers);
        messages.push(event(
            &format!("x-join-{u}"),
            ts,
            HOSTILE_STREAM,
            &format!(r#""event_type":"viewer_join","user_id":"xu{u}""#),
        ));
    }
    messages.push(event(
        "x-chat",
        first + TimeDelta::seconds(59),
        HOSTILE_STREAM,
        r#""event_type":"chat_message","user_id":"xu0","message_len":5"#,
    ));
    for u in 0..2 {
        messages.push(event(
            &format!("x-leave-{u}"),
            last + TimeDelta::seconds(1 + u),
            HOSTILE_STREAM,
            &format!(r#""event_type":"viewer_leave","user_id":"xu{u}""#),
        ));
    }
    messages.push(event(
        "x-donation",
        last + TimeDelta::seconds(5),
        HOSTILE_STREAM,
        r#""event_type":"donation","user_id":"xu5","amount_usd":12.34"#,
    ));
    let minutes = vec![
        (first, HOSTILE_STREAM.to_owned(), viewers),
        (last, HOSTILE_STREAM.to_owned(), viewers - 2),
    ];
    (messages, minutes)
}

fn get_json(serve: &Serve, path: &str) -> (u16, Value) {
    let (status, body) = serve.get(path);
    let value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
    (status, value)
}

fn produce(broker: &Broker, topic: &str, key: &str, payloads: &[Vec<u8>]) {
    broker.produce(topic, key.as_bytes(), payloads);
}

// ---- the browser test -------------------------------------------------

#[test]
fn dashboard_renders_live_data_as_text_in_headless_chromium() {
    // Fail first and clearly when the browser is missing.
    let _ = chromium();
    let mut services = Services::start();
    let topic = services.broker.create_topic("dashboard", 1);
    let db = services.postgres.create_database("dashboard");
    let scenario = Scenario {
        spacing_ms: 100,
        ..Scenario::with_trouble(12_000)
    };
    let expected = scenario.produce(&services.broker, &topic, 1);
    let mut serve = Serve::start(ServeConfig::new(&db, &services.broker, &topic));
    wait_for_truth(&mut serve, &expected, Duration::from_secs(120));

    // A stream named like markup, with more viewers than any other in the
    // last 15 minutes, and a malformed message that is markup.
    let last = expected
        .rows
        .iter()
        .map(|r| r.window_start)
        .max()
        .expect("the scenario has rows");
    let since = last - TimeDelta::minutes(14);
    let mut minutes: Vec<Peak> = expected
        .rows
        .iter()
        .map(|r| (r.window_start, r.stream_id.clone(), r.active_viewers))
        .collect();
    let (_, peak) = ranking(&minutes, since, 1)
        .pop()
        .expect("the scenario has a top stream");
    let (messages, hostile) = hostile_stream(last, peak + 5);
    produce(&services.broker, &topic, HOSTILE_STREAM, &messages);
    produce(
        &services.broker,
        &topic,
        "html",
        &[HTML_PAYLOAD.as_bytes().to_vec()],
    );
    let minutes_path = format!("/streams/{}/minutes", encode(HOSTILE_STREAM));
    harness::wait_for(
        "the hostile stream's minutes and the HTML dead letter",
        Duration::from_secs(60),
        || {
            let (_, minutes) = serve.get(&minutes_path);
            let minutes: Value = serde_json::from_str(&minutes).ok()?;
            let viewers: Vec<i64> = minutes["rows"]
                .as_array()?
                .iter()
                .filter(|r| r["is_final"] == json!(true))
                .filter_map(|r| r["active_viewers"].as_i64())
                .collect();
            let want: Vec<i64> = hostile.iter().map(|m| m.2).collect();
            let (_, dead) = get_json(&serve, "/dead_letters?limit=1");
            (viewers == want && dead["rows"][0]["payload"] == json!(HTML_PAYLOAD)).then_some(())
        },
    );
    minutes.extend(hostile.iter().cloned());
    let top: Vec<String> = ranking(&minutes, since, 10)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(top[0], HOSTILE_STREAM, "the hostile stream ranks first");

    // The page, opened on the hostile stream.
    let url = serve.url(&format!("/#stream={}", encode(HOSTILE_STREAM)));
    let (dom, refreshes) = wait_for_dom(&url, Duration::from_secs(90), |dom| {
        let refreshes = dom.attr_num("page", "data-refreshes")?;
        if refreshes < 3 {
            return Err(format!("only {refreshes} refreshes"));
        }
        if dom.attr("status", "data-ready").as_deref() != Some("true") {
            return Err(format!("not ready: {:?}", dom.text_of("problem-list")));
        }
        let ids = dom.texts("span", "stream-id");
        if ids != top {
            return Err(format!("top table lists {ids:?}, want {top:?}"));
        }
        for chart in ["chart-viewers", "chart-chat", "chart-donations"] {
            let points = dom.attr_num(chart, "data-points")?;
            if points != hostile.len() {
                return Err(format!("{chart} holds {points} points"));
            }
        }
        // One lag sample per refresh; a rate needs two samples.
        let lag = dom.attr_num("chart-lag", "data-points")?;
        let rate = dom.attr_num("chart-rate", "data-points")?;
        if (lag, rate) != (refreshes, refreshes - 1) {
            return Err(format!(
                "health charts hold {lag} and {rate} points after {refreshes} refreshes"
            ));
        }
        Ok(refreshes)
    });
    assert!(refreshes >= 3);
    assert_eq!(dom.attr("chart-viewers", "data-open").as_deref(), Some("0"));
    let shown: Vec<String> = hostile
        .iter()
        .rev()
        .map(|m| rfc3339(m.0).replace('T', " ").replace(".000Z", "Z"))
        .collect();
    assert_eq!(dom.texts("td", "mono minute"), shown, "newest minute first");

    // Escaping: the literal text is there, no element was injected.
    assert_eq!(dom.text_of("stream-title").as_deref(), Some(HOSTILE_STREAM));
    assert_eq!(dom.texts("span", "stream-id")[0], HOSTILE_STREAM);
    assert_eq!(dom.texts("pre", "payload")[0], HTML_PAYLOAD);
    assert_eq!(dom.count("<img"), 0, "an <img> element was injected");
    assert_eq!(dom.count("<b "), 0, "a <b> element was injected");
    assert_eq!(
        dom.count("<script"),
        2,
        "only the page's own two scripts exist"
    );
    assert!(dom.0.contains("<title>streamstats · live</title>"));

    // The screenshot for the README, on the busiest generated stream (an
    // hour of minutes) with the hostile one in the table.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let busiest = serve.url(&format!("/#stream={}", encode(&top[1])));
    run_chromium(&busiest, 8_000, &format!("--screenshot={}", shot.display()));
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    eprintln!("dashboard screenshot: {}", shot.display());

    // A live event: its window is open, and the page marks it so. It is
    // the only stream of the newest 15 minutes, so the page, opened with
    // no stream named, selects it the way a click does.
    let now = Utc::now();
    produce(
        &services.broker,
        &topic,
        "live-now",
        &[event(
            "live-1",
            now,
            "live-now",
            r#""event_type":"chat_message","user_id":"lu","message_len":3"#,
        )],
    );
    let url = serve.url("/");
    let (dom, ()) = wait_for_dom(&url, Duration::from_secs(60), |dom| {
        let ids = dom.texts("span", "stream-id");
        if ids != ["live-now"] {
            return Err(format!("top table lists {ids:?}"));
        }
        let points = dom.attr_num("chart-chat", "data-points")?;
        let open = dom.attr_num("chart-chat", "data-open")?;
        if (points, open) == (1, 1) {
            Ok(())
        } else {
            Err(format!("chat chart holds {points} points, {open} open"))
        }
    });
    assert_eq!(dom.text_of("stream-title").as_deref(), Some("live-now"));
    assert_eq!(dom.count("data-final=\"false\""), 1);
    assert_eq!(dom.texts("span", "badge open"), vec!["open".to_owned()]);
    let minute = rfc3339(minute_of(now)).replace('T', " ");
    assert_eq!(
        dom.texts("td", "mono minute"),
        vec![minute.replace(".000Z", "Z")]
    );

    // The database goes away: the page still loads and says what is wrong.
    services.postgres.stop_immediate();
    assert_eq!(serve.get("/").0, 200);
    assert_eq!(serve.get("/dead_letters").0, 503);
    let (_, ()) = wait_for_dom(&serve.url("/"), Duration::from_secs(60), |dom| {
        let ready = dom.attr("status", "data-ready");
        let database = dom.attr("status", "data-database");
        let problems = dom.text_of("problem-list").unwrap_or_default();
        let top_error = dom.text_of("top-error").unwrap_or_default();
        if ready.as_deref() == Some("false")
            && database.as_deref() == Some("down")
            && problems.contains("database unreachable")
            && top_error.starts_with("database unavailable")
            && dom.attr("problems", "hidden").is_none()
        {
            Ok(())
        } else {
            Err(format!(
                "ready {ready:?}, database {database:?}, problems {problems:?}, top {top_error:?}"
            ))
        }
    });
    serve.terminate();
}

// ---- the route test ---------------------------------------------------

#[test]
fn dead_letters_and_assets_answer_exactly() {
    let services = Services::start();
    let topic = services.broker.create_topic("dead", 1);
    let db = services.postgres.create_database("dead");
    let serve = Serve::start(ServeConfig::new(&db, &services.broker, &topic));
    let long = vec![b'x'; 5_000];
    let unknown_type = br#"{"event_id":"e","ts":"2025-12-20T18:00:00Z","event_type":"party","stream_id":"s","user_id":"u"}"#;
    let payloads: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        long.clone(),
        vec![0xff, 0xfe, b'{'],
        unknown_type.to_vec(),
        HTML_PAYLOAD.as_bytes().to_vec(),
    ];
    produce(&services.broker, &topic, "k", &payloads);
    let all = harness::wait_for("five dead letters", Duration::from_secs(60), || {
        let (status, body) = get_json(&serve, "/dead_letters");
        (status == 200 && body["rows"].as_array().map(Vec::len) == Some(5)).then_some(body)
    });

    // Newest first; payloads as lossy text, cut to 1024 bytes.
    let want = [
        (
            4,
            "invalid_json",
            HTML_PAYLOAD.to_owned(),
            HTML_PAYLOAD.len(),
            false,
        ),
        (
            3,
            "unknown_event_type",
            String::from_utf8_lossy(unknown_type).into_owned(),
            unknown_type.len(),
            false,
        ),
        (2, "invalid_utf8", "\u{fffd}\u{fffd}{".to_owned(), 3, false),
        (1, "invalid_json", "x".repeat(1_024), 5_000, true),
        (0, "invalid_json", "not json".to_owned(), 8, false),
    ];
    let rows = all["rows"].as_array().expect("rows");
    assert_eq!(all["reason"], Value::Null);
    assert_eq!(all["limit"], json!(20));
    assert!(all["reasons"]
        .as_array()
        .expect("reasons")
        .contains(&json!("late")));
    for (row, (offset, reason, payload, bytes, truncated)) in rows.iter().zip(&want) {
        assert_eq!(
            (
                &row["topic"],
                &row["partition"],
                &row["offset"],
                &row["reason"],
                &row["payload"],
                &row["payload_bytes"],
                &row["payload_truncated"],
                &row["key"],
            ),
            (
                &json!(topic),
                &json!(0),
                &json!(offset),
                &json!(reason),
                &json!(payload),
                &json!(bytes),
                &json!(truncated),
                &json!("k"),
            ),
            "{row}"
        );
        let error = row["error"].as_str().expect("error is text");
        assert!(
            !error.is_empty() && error.chars().count() <= 1_024,
            "{error}"
        );
        let received = row["received_at"].as_str().expect("received_at");
        assert!(
            received.ends_with('Z') && DateTime::parse_from_rfc3339(received).is_ok(),
            "{received}"
        );
    }
    let ids: Vec<i64> = rows.iter().filter_map(|r| r["id"].as_i64()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    let offsets = |path: &str| -> Vec<i64> {
        let (status, body) = get_json(&serve, path);
        assert_eq!(status, 200, "{path}: {body}");
        body["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .filter_map(|r| r["offset"].as_i64())
            .collect()
    };
    assert_eq!(offsets("/dead_letters?reason=invalid_json"), vec![4, 1, 0]);
    assert_eq!(
        offsets("/dead_letters?reason=invalid_json&limit=2"),
        vec![4, 1]
    );
    assert_eq!(offsets("/dead_letters?limit=1"), vec![4]);
    assert_eq!(offsets("/dead_letters?reason=late"), Vec::<i64>::new());
    assert_eq!(offsets("/dead_letters?limit=100").len(), 5);

    for (path, param) in [
        ("/dead_letters?reason=bogus", "reason"),
        ("/dead_letters?reason=", "reason"),
        ("/dead_letters?limit=0", "limit"),
        ("/dead_letters?limit=101", "limit"),
        ("/dead_letters?limit=ten", "limit"),
    ] {
        let (status, body) = get_json(&serve, path);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with(param),
            "{path}: {body}"
        );
    }

    // The page and its assets: types, caching, revalidation, 404.
    for (path, content_type, cache) in [
        ("/", "text/html; charset=utf-8", "no-cache"),
        (
            "/assets/app.js",
            "text/javascript; charset=utf-8",
            "no-cache",
        ),
        ("/assets/style.css", "text/css; charset=utf-8", "no-cache"),
        (
            "/assets/uPlot-1.6.32.iife.min.js",
            "text/javascript; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
        (
            "/assets/uPlot-1.6.32.min.css",
            "text/css; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
    ] {
        let resp = ureq::get(&serve.url(path)).call().expect("asset answers");
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.header("content-type"), Some(content_type), "{path}");
        assert_eq!(resp.header("cache-control"), Some(cache), "{path}");
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
        let etag = resp.header("etag").expect("an ETag").to_owned();
        let body = resp.into_string().expect("text body");
        assert!(!body.is_empty());
        let again = ureq::get(&serve.url(path))
            .set("If-None-Match", &etag)
            .call()
            .expect("revalidation answers");
        assert_eq!(again.status(), 304, "{path}");
    }
    let csp = ureq::get(&serve.url("/"))
        .call()
        .expect("page")
        .header("content-security-policy")
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let (status, body) = get_json(&serve, "/assets/nope.js");
    assert_eq!(status, 404);
    assert!(body["error"]
        .as_str()
        .unwrap_or_default()
        .contains("nope.js"));
}
