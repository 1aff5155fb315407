//! A throwaway Postgres cluster on a free loopback port, run as the
//! unprivileged `postgres` user when the tests run as root (initdb refuses
//! root). `fsync` is off: the tests crash the service, never the machine.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use diesel::{Connection, PgConnection, RunQueryDsl};

use super::process::{chown_to_postgres, command, ChildProcess, TempDir};
use super::{free_port, unique_name, wait_for};

/// A running Postgres cluster.
pub struct Postgres {
    process: Option<ChildProcess>,
    port: u16,
    bin: PathBuf,
    // Last field: the directory goes after the server is stopped.
    dir: TempDir,
}

/// The directory holding `initdb` and `postgres`: `$PG_BIN`, else the
/// newest `/usr/lib/postgresql/<version>/bin`, else `pg_config --bindir`.
fn bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("PostgreSQL server binaries are installed (scripts/install-deps.sh)");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl Postgres {
    /// Runs initdb and starts the server; returns once it accepts connections.
    pub fn start() -> Postgres {
        let dir = TempDir::new("streamstats-pg");
        let bin = bindir();
        chown_to_postgres(dir.path());
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"), true)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            process: None,
            port: free_port(),
            bin,
            dir,
        };
        pg.resume();
        pg
    }

    /// Starts the server again on the same port and data (after a stop).
    pub fn resume(&mut self) {
        assert!(self.process.is_none(), "postgres is already running");
        let data = self.dir.path().join("data");
        let mut cmd = command(&self.bin.join("postgres"), true);
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ]);
        let log = self.dir.path().join("postgres.log");
        let mut process = ChildProcess::spawn("postgres", cmd, log);
        let url = self.url("postgres");
        wait_for(
            "postgres to accept connections",
            Duration::from_secs(60),
            || {
                process.assert_running();
                PgConnection::establish(&url).ok()
            },
        );
        self.process = Some(process);
    }

    /// Freezes the server and its backends (SIGSTOP): connections stay open
    /// and nothing answers, as with a hung host.
    pub fn freeze(&self) {
        self.signal_all("STOP");
    }

    /// Wakes a frozen server (SIGCONT).
    pub fn thaw(&self) {
        self.signal_all("CONT");
    }

    fn signal_all(&self, signal: &str) {
        // The postmaster first, so it forks no backend the second misses.
        let process = self.process.as_ref().expect("postgres is running");
        process.signal(signal);
        let _ = std::process::Command::new("pkill")
            .arg(format!("-{signal}"))
            .args(["--parent", &process.pid().to_string()])
            .status();
    }

    /// Stops the server in immediate mode (no shutdown checkpoint, like a crash).
    pub fn stop_immediate(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop("QUIT", Duration::from_secs(30));
        }
    }

    /// `pg_waldump --stats=record` of the WAL between two positions (as
    /// `pg_current_wal_lsn()` text): where a benchmark's WAL bytes went.
    #[allow(dead_code)] // used by benchmarks only
    pub fn wal_stats(&self, from: &str, to: &str) -> String {
        let out = command(&self.bin.join("pg_waldump"), true)
            .arg("--stats=record")
            .arg("-p")
            .arg(self.dir.path().join("data").join("pg_wal"))
            .args(["-s", from, "-e", to])
            .output()
            .expect("pg_waldump runs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of database `db` as the superuser.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a fresh database and returns its URL.
    pub fn create_database(&self, prefix: &str) -> String {
        let name = unique_name(prefix).to_lowercase();
        let mut conn = PgConnection::establish(&self.url("postgres")).expect("postgres is up");
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .expect("database is creatable");
        self.url(&name)
    }

    /// Drops the database of `url` (made by [`Postgres::create_database`]),
    /// so that its background maintenance does not weigh on what runs next.
    #[allow(dead_code)] // used by benchmarks only
    pub fn drop_database(&self, url: &str) {
        let name = url.rsplit('/').next().expect("a database url");
        let mut conn = PgConnection::establish(&self.url("postgres")).expect("postgres is up");
        diesel::sql_query(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .execute(&mut conn)
            .expect("database is droppable");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // Fast shutdown: terminates sessions, then exits.
            process.stop("INT", Duration::from_secs(10));
        }
    }
}
