//! A real Prometheus (Debian's package) scraping a `serve` under test, with
//! the shipped configuration's rules, and its HTTP query API.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::process::{command, ChildProcess, TempDir};
use super::{free_port, wait_for};

/// A running Prometheus.
pub struct Prometheus {
    process: ChildProcess,
    port: u16,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML text) and the rule files
    /// copied next to it.
    pub fn start(config: &str, rule_files: &[&Path]) -> Prometheus {
        let dir = TempDir::new("streamstats-prom");
        for rules in rule_files {
            let name = rules.file_name().expect("rule file has a name");
            std::fs::copy(rules, dir.path().join(name)).expect("rules copied");
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("config written");
        let port = free_port();
        let mut cmd = command(Path::new("/usr/bin/prometheus"), false);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let mut process = ChildProcess::spawn("prometheus", cmd, dir.path().join("prometheus.log"));
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        wait_for("prometheus to be ready", Duration::from_secs(60), || {
            process.assert_running();
            ureq::get(&ready).call().ok()
        });
        Prometheus {
            process,
            port,
            _dir: dir,
        }
    }

    /// GET an API path and parse the JSON answer.
    pub fn api(&self, path_and_query: &str) -> Value {
        let url = format!("http://127.0.0.1:{}{path_and_query}", self.port);
        let body = match ureq::get(&url).call() {
            Ok(r) => r.into_string().unwrap_or_default(),
            Err(ureq::Error::Status(_, r)) => r.into_string().unwrap_or_default(),
            Err(e) => panic!("GET {url}: {e}"),
        };
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {body}"))
    }

    /// Evaluates an instant query; returns the API's `data.result`.
    pub fn query(&self, expr: &str) -> Value {
        let mut encoded = String::new();
        for b in expr.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    encoded.push(b as char)
                }
                _ => encoded.push_str(&format!("%{b:02X}")),
            }
        }
        let answer = self.api(&format!("/api/v1/query?query={encoded}"));
        assert_eq!(
            answer["status"], "success",
            "query {expr:?} failed: {answer}"
        );
        answer["data"]["result"].clone()
    }
}
