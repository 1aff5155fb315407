//! The shipped observability on a real Prometheus: `promtool` accepts the
//! config and the alert rules; Prometheus scrapes a running `serve` with
//! the shipped config; every dashboard panel query returns data; every
//! alert expression evaluates; and the database-down alert goes pending
//! when Postgres stops.

mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness::{wait_for_truth, Prometheus, Scenario, Serve, ServeConfig, Services};
use serde_json::Value;

fn shipped(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn promtool(args: &[&str], file: &Path) {
    let out = Command::new("promtool")
        .args(args)
        .arg(file)
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool {args:?} {} failed:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dashboard_and_alerts_work_on_a_real_prometheus() {
    let config_path = shipped("observability/prometheus/prometheus.yml");
    let rules_path = shipped("observability/prometheus/alerts.yml");
    promtool(&["check", "config"], &config_path);
    promtool(
        &["check", "config"],
        &shipped("observability/prometheus/prometheus.docker.yml"),
    );
    promtool(&["check", "rules"], &rules_path);

    let mut services = Services::start();
    let topic = services.broker.create_topic("observe", 3);
    let db = services.postgres.create_database("observe");
    let expected = Scenario::with_trouble(20_000).produce(&services.broker, &topic, 3);
    let mut serve = Serve::start(ServeConfig::new(&db, &services.broker, &topic));

    // The shipped config, pointed at this serve and scraping every second.
    let shipped_config = std::fs::read_to_string(&config_path).expect("config");
    assert!(shipped_config.contains("127.0.0.1:8000"));
    let config = shipped_config
        .replace(
            "127.0.0.1:8000",
            &format!("127.0.0.1:{}", serve.cfg.http_port),
        )
        .replace("scrape_interval: 5s", "scrape_interval: 2s")
        .replace("evaluation_interval: 5s", "evaluation_interval: 1s");
    let prometheus = Prometheus::start(&config, &[&rules_path]);
    wait_for_truth(&mut serve, &expected, Duration::from_secs(240));
    // Live traffic while the panels are read, so rates are not all zero.
    let mut live = Command::new(env!("CARGO_BIN_EXE_streamstats"))
        .args([
            "generate",
            "--kafka-brokers",
            &services.broker.bootstrap(),
            "--kafka-topic",
            &topic,
        ])
        .args(["--rate", "300", "--count", "60000", "--seed", "9"])
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("live generator starts");

    // Several scrapes with traffic, so every rate has two samples or more.
    harness::wait_for("ten scrapes", Duration::from_secs(120), || {
        let r = prometheus.query("count_over_time(up[1m]) >= 10");
        r.as_array().filter(|r| !r.is_empty()).map(|_| ())
    });
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(shipped("observability/grafana/dashboards/overview.json"))
            .expect("dashboard"),
    )
    .expect("dashboard is JSON");
    assert_eq!(
        dashboard["title"],
        "Real-time Streaming Analytics — Overview"
    );
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 11);
    for panel in panels {
        let title = panel["title"].as_str().expect("title");
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let result = harness::wait_for(
                &format!("panel {title:?} to have data"),
                Duration::from_secs(90),
                || {
                    let result = prometheus.query(expr);
                    result.as_array().filter(|r| !r.is_empty()).cloned()
                },
            );
            let values: Vec<String> = result
                .iter()
                .map(|s| format!("{}={}", s["metric"], s["value"][1].as_str().unwrap_or("?")))
                .collect();
            println!("panel {title:?}: {}", values.join(", "));
        }
    }

    // Every alert rule is loaded, healthy, and its expression evaluates.
    let rules = prometheus.api("/api/v1/rules");
    let loaded: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .collect();
    assert_eq!(loaded.len(), 5, "{rules}");
    for rule in &loaded {
        let _ = prometheus.query(rule["query"].as_str().expect("query"));
        harness::wait_for("the rule to be evaluated", Duration::from_secs(30), || {
            let rules = prometheus.api("/api/v1/rules");
            rules["data"]["groups"][0]["rules"]
                .as_array()
                .expect("rules")
                .iter()
                .all(|r| r["health"] == "ok")
                .then_some(())
        });
    }

    let _ = live.kill();
    let _ = live.wait();

    // Stop Postgres: the database-down alert goes pending (then firing).
    services.postgres.stop_immediate();
    harness::wait_for(
        "StreamstatsDatabaseDown to go pending",
        Duration::from_secs(90),
        || {
            let alerts = prometheus.api("/api/v1/alerts");
            alerts["data"]["alerts"].as_array().and_then(|a| {
                a.iter()
                    .find(|x| x["labels"]["alertname"] == "StreamstatsDatabaseDown")
                    .map(|x| println!("alert StreamstatsDatabaseDown is {}", x["state"]))
            })
        },
    );
}
