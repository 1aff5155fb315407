//! `streamstats stack`: the whole pipeline on this machine with one command
//! and no Docker: a Postgres cluster and a tansu broker whose data live in
//! `.streamstats/` (kept between runs; `--fresh` starts over), then `serve`,
//! the generator at the seed's pace, and Prometheus when it is installed.
//! Prints the URLs and a live status line; Ctrl-C stops everything, `serve`
//! first so its final checkpoint is written. A second run resumes.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

/// `streamstats stack`.
#[derive(Debug, Args)]
pub struct StackArgs {
    /// Directory for the data and logs of every component.
    #[arg(
        long,
        env = "STACK_DIR",
        value_name = "STACK_DIR",
        default_value = ".streamstats"
    )]
    pub dir: PathBuf,
    /// Delete the stack's data first and start empty.
    #[arg(long)]
    pub fresh: bool,
    /// Postgres port on 127.0.0.1.
    #[arg(
        long,
        env = "STACK_PG_PORT",
        value_name = "STACK_PG_PORT",
        default_value_t = 55432
    )]
    pub pg_port: u16,
    /// Kafka-protocol (tansu) port on 127.0.0.1.
    #[arg(
        long,
        env = "STACK_KAFKA_PORT",
        value_name = "STACK_KAFKA_PORT",
        default_value_t = 19092
    )]
    pub kafka_port: u16,
    /// HTTP port of `serve` on 127.0.0.1.
    #[arg(
        long,
        env = "STACK_HTTP_PORT",
        value_name = "STACK_HTTP_PORT",
        default_value_t = 8000
    )]
    pub http_port: u16,
    /// Prometheus port on 127.0.0.1 (used when `prometheus` is installed).
    #[arg(
        long,
        env = "STACK_PROMETHEUS_PORT",
        value_name = "STACK_PROMETHEUS_PORT",
        default_value_t = 9090
    )]
    pub prometheus_port: u16,
    /// Generator events per second (live clock); 0 runs no generator.
    #[arg(
        long,
        env = "GEN_RATE",
        value_name = "GEN_RATE",
        default_value_t = 20.0
    )]
    pub rate: f64,
}

/// Errors of the stack, named after the component that failed.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A directory or file could not be prepared.
    #[error("cannot prepare {path}: {source}")]
    Prepare {
        path: String,
        source: std::io::Error,
    },
    /// A program could not be found.
    #[error("{0} (run scripts/install-deps.sh)")]
    Missing(String),
    /// A component failed to start.
    #[error("{component} did not start: {detail}")]
    Start { component: String, detail: String },
}

/// A child process with a name and a log file.
struct Component {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Component {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Result<Component, StackError> {
        let prepare = |source| StackError::Prepare {
            path: log.display().to_string(),
            source,
        };
        let out = fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(prepare)?;
        let err = out.try_clone().map_err(prepare)?;
        // Its own process group: a Ctrl-C in the terminal reaches only the
        // stack, which then stops the components in order (the producer,
        // then serve with its final checkpoint, then the services).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| StackError::Start {
                component: name.to_owned(),
                detail: e.to_string(),
            })?;
        Ok(Component { name, child, log })
    }

    fn check_running(&mut self) -> Result<(), StackError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(StackError::Start {
                component: self.name.to_owned(),
                detail: format!("exited with {status}; see {}", self.log.display()),
            }),
            _ => Ok(()),
        }
    }

    /// Sends `signal` and waits up to `patience` before killing.
    fn stop(&mut self, signal: &str, patience: Duration) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("stack: {} stopped ({status}).", self.name);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("stack: {} killed after {patience:?}.", self.name);
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program` under `setpriv`: dies with the stack, and runs as the
/// `postgres` user when asked and we are root (initdb refuses root).
fn command(program: &Path, as_postgres: bool) -> Command {
    let mut cmd = Command::new("setpriv");
    if as_postgres && running_as_root() {
        cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]);
    }
    cmd.args(["--pdeathsig=TERM", "--"]).arg(program);
    cmd
}

fn postgres_bindir() -> Result<PathBuf, StackError> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
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
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| StackError::Missing("PostgreSQL server binaries not found".into()))
}

fn tansu_bin() -> Result<PathBuf, StackError> {
    if let Ok(bin) = std::env::var("TANSU_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let cache = std::env::var("STREAMSTATS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/streamstats")
        });
    let bin = cache.join("tansu/bin/tansu");
    bin.exists()
        .then_some(bin)
        .ok_or_else(|| StackError::Missing("tansu not found in the cache".into()))
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

fn wait_for_port(
    component: &mut Component,
    port: u16,
    patience: Duration,
) -> Result<(), StackError> {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        component.check_running()?;
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(StackError::Start {
        component: component.name.to_owned(),
        detail: format!(
            "port {port} not open after {patience:?}; see {}",
            component.log.display()
        ),
    })
}

fn prepare_dir(path: &Path) -> Result<(), StackError> {
    fs::create_dir_all(path).map_err(|source| StackError::Prepare {
        path: path.display().to_string(),
        source,
    })
}

fn start_postgres(args: &StackArgs, dir: &Path) -> Result<Component, StackError> {
    let bin = postgres_bindir()?;
    let data = dir.join("pg");
    if !data.join("PG_VERSION").exists() {
        prepare_dir(&data)?;
        if running_as_root() {
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data)
                .status();
        }
        eprintln!(
            "stack: creating the Postgres cluster in {}.",
            data.display()
        );
        let out = command(&bin.join("initdb"), true)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "streamstats",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .map_err(|e| StackError::Start {
                component: "initdb".into(),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(StackError::Start {
                component: "initdb".into(),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
    }
    let mut cmd = command(&bin.join("postgres"), true);
    cmd.arg("-D")
        .arg(&data)
        .args(["-p", &args.pg_port.to_string(), "-k"])
        .arg(&data)
        .args(["-c", "listen_addresses=127.0.0.1"]);
    let mut pg = Component::spawn("postgres", cmd, dir.join("postgres.log"))?;
    wait_for_port(&mut pg, args.pg_port, Duration::from_secs(60))?;
    ensure_database(&bin.join("psql"), args.pg_port)?;
    Ok(pg)
}

/// Creates the database the default DATABASE_URL names, unless it exists;
/// retries while the fresh server finishes starting.
fn ensure_database(psql: &Path, port: u16) -> Result<(), StackError> {
    let run = |sql: &str| -> Option<String> {
        let out = Command::new(psql)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "streamstats",
            ])
            .args(["-d", "postgres", "-qtAc", sql])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    for _ in 0..50 {
        let done = match run("SELECT 1 FROM pg_database WHERE datname = 'streamstats'") {
            Some(exists) if exists == "1" => true,
            Some(_) => run("CREATE DATABASE streamstats").is_some(),
            None => false,
        };
        if done {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(StackError::Start {
        component: "postgres".into(),
        detail: "the streamstats database could not be created".into(),
    })
}

fn start_tansu(args: &StackArgs, dir: &Path) -> Result<Component, StackError> {
    let bin = tansu_bin()?;
    let data = dir.join("tansu");
    prepare_dir(&data)?;
    let url = format!("tcp://127.0.0.1:{}", args.kafka_port);
    let mut cmd = command(&bin, false);
    cmd.current_dir(&data)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        // sqlite storage survives restarts and resumes at exact offsets.
        .args(["--storage-engine", "sqlite://broker.db"])
        .env("RUST_LOG", "warn");
    let mut broker = Component::spawn("tansu", cmd, dir.join("tansu.log"))?;
    wait_for_port(&mut broker, args.kafka_port, Duration::from_secs(60))?;
    Ok(broker)
}

fn start_prometheus(args: &StackArgs, dir: &Path) -> Result<Option<Component>, StackError> {
    let Some(bin) = which("prometheus") else {
        return Ok(None);
    };
    let data = dir.join("prometheus");
    prepare_dir(&data)?;
    let config = data.join("prometheus.yml");
    let text = format!(
        "global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: streamstats\n    metrics_path: /prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
        args.http_port
    );
    fs::write(&config, text).map_err(|source| StackError::Prepare {
        path: config.display().to_string(),
        source,
    })?;
    let mut cmd = command(&bin, false);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            data.join("tsdb").display()
        ))
        .arg(format!(
            "--web.listen-address=127.0.0.1:{}",
            args.prometheus_port
        ));
    let mut prom = Component::spawn("prometheus", cmd, dir.join("prometheus.log"))?;
    wait_for_port(&mut prom, args.prometheus_port, Duration::from_secs(60))?;
    Ok(Some(prom))
}

/// One `name value` sample from the service's /prometheus text.
fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn status_line(http_port: u16) -> String {
    let url = format!("http://127.0.0.1:{http_port}/prometheus");
    match ureq::get(&url).timeout(Duration::from_secs(2)).call() {
        Ok(resp) => {
            let body = resp.into_string().unwrap_or_default();
            format!(
                "consumed {:.0}  rejected {:.0}  checkpoints {:.0}  open windows {:.0}  last checkpoint {:.1}s ago",
                sample(&body, "streamstats_events_consumed_total"),
                sample(&body, "streamstats_events_rejected_total"),
                sample(&body, "streamstats_checkpoints_total{outcome=\"committed\"}"),
                sample(&body, "streamstats_open_windows"),
                sample(&body, "streamstats_last_checkpoint_age_seconds"),
            )
        }
        Err(e) => format!("serve not answering yet ({e})"),
    }
}

/// Runs the stack until Ctrl-C or SIGTERM.
pub fn run(args: StackArgs) -> Result<(), StackError> {
    if args.fresh && args.dir.exists() {
        fs::remove_dir_all(&args.dir).map_err(|source| StackError::Prepare {
            path: args.dir.display().to_string(),
            source,
        })?;
    }
    prepare_dir(&args.dir)?;
    let dir = args
        .dir
        .canonicalize()
        .map_err(|source| StackError::Prepare {
            path: args.dir.display().to_string(),
            source,
        })?;
    let exe = std::env::current_exe().map_err(|e| StackError::Missing(e.to_string()))?;
    let database_url = format!(
        "postgres://streamstats@127.0.0.1:{}/streamstats",
        args.pg_port
    );
    let brokers = format!("127.0.0.1:{}", args.kafka_port);

    let mut components = vec![start_postgres(&args, &dir)?, start_tansu(&args, &dir)?];
    let mut serve_cmd = command(&exe, false);
    serve_cmd
        .arg("serve")
        .env("DATABASE_URL", &database_url)
        .env("KAFKA_BROKERS", &brokers)
        // One instance: it takes every partition itself, so a restart
        // resumes at once whatever the broker's group coordinator does.
        .env("KAFKA_ASSIGNMENT", "self")
        .env("HTTP_ADDR", format!("127.0.0.1:{}", args.http_port));
    let mut serve = Component::spawn("serve", serve_cmd, dir.join("serve.log"))?;
    wait_for_port(&mut serve, args.http_port, Duration::from_secs(90))?;
    components.push(serve);
    if args.rate > 0.0 {
        let mut gen = command(&exe, false);
        gen.arg("generate")
            .env("KAFKA_BROKERS", &brokers)
            .args(["--rate", &args.rate.to_string()]);
        components.push(Component::spawn("generate", gen, dir.join("generate.log"))?);
    }
    let prometheus = start_prometheus(&args, &dir)?;
    let prometheus_url = prometheus
        .as_ref()
        .map(|_| format!("http://127.0.0.1:{}", args.prometheus_port));
    components.extend(prometheus);

    let api = format!("http://127.0.0.1:{}", args.http_port);
    println!(
        "streamstats stack is up (data and logs in {}):",
        dir.display()
    );
    println!("  dashboard    {api}/");
    println!("  API          {api}/metrics  {api}/streams  {api}/streams/top  {api}/dead_letters");
    println!("  health       {api}/health  {api}/ready");
    println!("  metrics      {api}/prometheus");
    println!(
        "  Prometheus   {}",
        prometheus_url
            .as_deref()
            .unwrap_or("not installed (apt-get install prometheus)")
    );
    println!("  Postgres     {database_url}");
    println!("  Kafka        {brokers} (topic stream.events)");
    println!("Ctrl-C stops everything; the next run resumes where this one stopped.");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StackError::Start {
            component: "runtime".into(),
            detail: e.to_string(),
        })?;
    let outcome = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = term.recv() => return Ok(()),
                _ = int.recv() => return Ok(()),
                _ = tick.tick() => {
                    for c in components.iter_mut() {
                        if let Err(e) = c.check_running() {
                            return Err(e.to_string());
                        }
                    }
                    let line = status_line(args.http_port);
                    eprint!("\r\x1b[2K{line}");
                }
            }
        }
    });
    eprintln!();
    if let Err(e) = &outcome {
        eprintln!("stack: stopping because {e}.");
    }
    // Producer first, then serve (final checkpoint), then the services.
    for c in components.iter_mut().rev() {
        let (signal, patience) = match c.name {
            "serve" => ("TERM", Duration::from_secs(40)),
            "postgres" => ("INT", Duration::from_secs(20)),
            _ => ("TERM", Duration::from_secs(10)),
        };
        c.stop(signal, patience);
    }
    outcome.map_err(|detail| StackError::Start {
        component: "stack".into(),
        detail,
    })
}
