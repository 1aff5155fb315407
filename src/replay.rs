//! `streamstats replay PATH...`: the pipeline with a file source instead of
//! Kafka, and no HTTP API. Lines go through the same consumer, window
//! actors and checkpoint transaction as `serve`'s messages; the files'
//! position is committed with the results, so a rerun after `kill -9`
//! resumes at the first uncommitted line and ends with the same tables.
//! At the end of the last file every window is finalized and the command
//! exits; SIGINT or SIGTERM writes a final checkpoint first.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use streamstats_actors::config::{PipelineConfig, Source};
use streamstats_actors::event::RejectReason;
use streamstats_actors::messages::Shutdown;
use streamstats_actors::metrics::Metrics;
use streamstats_actors::{pipeline, store};

use crate::cli::ReplayArgs;
use crate::serve::{check_group, host_name, migrate, wait_for_signal, ServeError};

/// Why a replay did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// An input file cannot be read.
    #[error("PATH: cannot read {path}: {source}")]
    Input {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database refused start-up (see `serve`'s errors).
    #[error(transparent)]
    Start(#[from] ServeError),
    /// The database belongs to a Kafka consumer group.
    #[error("DATABASE_URL: {0}; replay into a database of its own")]
    OtherGroup(String),
    /// The metrics registry rejected a metric.
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The pipeline halted before the end of the input.
    #[error("{0}")]
    Halted(String),
    /// Waiting for signals failed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// Stopped by a signal before the end of the input (exit status 1, so a
    /// script can tell an interrupted backfill from a finished one).
    #[error("stopped before the end of the input; rerun the same command to resume")]
    Interrupted,
}

/// Consumer group of every replay's stored positions.
const REPLAY_GROUP: &str = "replay";
/// Progress lines when no bar is drawn.
const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(5);
/// How long a stop request waits for the final checkpoint.
const SHUTDOWN_PATIENCE: Duration = Duration::from_secs(30);

/// Replays the files, then returns.
pub fn run(args: ReplayArgs) -> Result<(), ReplayError> {
    actix_rt::System::new().block_on(replay(args))
}

async fn replay(args: ReplayArgs) -> Result<(), ReplayError> {
    let mut paths = Vec::with_capacity(args.paths.len());
    let mut total_bytes = 0u64;
    for path in &args.paths {
        let input = |source| ReplayError::Input {
            path: path.clone(),
            source,
        };
        let path = std::fs::canonicalize(path).map_err(input)?;
        let meta = std::fs::metadata(&path).map_err(input)?;
        if !meta.is_file() {
            return Err(input(std::io::Error::other("not a regular file")));
        }
        std::fs::File::open(&path).map_err(input)?;
        total_bytes += meta.len();
        paths.push(path);
    }
    let source = args.source.clone().unwrap_or_else(|| {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        format!("file:{}", names.join(","))
    });
    let mut cfg = PipelineConfig::new("", &source);
    cfg.source = Source::Files(paths);
    cfg.group_id = REPLAY_GROUP.to_owned();
    // Stable across reruns on this host: a rerun after a crash takes the
    // source back at once instead of waiting out the crashed run's lease.
    cfg.instance_id = format!("replay@{}", host_name());
    cfg.allowed_lateness = args.allowed_lateness;
    cfg.checkpoint_interval = args.checkpoint_interval;
    cfg.max_uncommitted_events = args.max_uncommitted_events;
    cfg.checkpoint_events = (args.max_uncommitted_events / 4).max(1);

    let pool =
        store::pool(&args.db.database_url, args.database_pool_size).map_err(ServeError::from)?;
    migrate(pool.clone()).await?;
    check_group(pool.clone(), REPLAY_GROUP.to_owned())
        .await
        .map_err(|e| match e {
            ServeError::OtherGroup(reason) => ReplayError::OtherGroup(reason),
            other => other.into(),
        })?;

    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry)?;
    let started = Instant::now();
    let pipeline = pipeline::start(cfg, pool, metrics.clone());
    let bar = progress_bar(&args.progress, total_bytes);
    let status = pipeline.status.clone();
    let ticker = {
        let (bar, metrics, read) = (bar.clone(), metrics.clone(), status.read_bytes());
        let mut last_line = Instant::now();
        actix_rt::spawn(async move {
            loop {
                let bytes = read.load(Ordering::Relaxed);
                bar.set_position(bytes);
                let events = metrics.events_consumed.get();
                let rate = events as f64 / started.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!("{events} events, {rate:.0}/s"));
                if bar.is_hidden() && last_line.elapsed() >= PROGRESS_LINE_EVERY {
                    last_line = Instant::now();
                    eprintln!(
                        "replay: {events} events, {rate:.0}/s, {:.0}% of {total_bytes} bytes read",
                        100.0 * bytes as f64 / total_bytes.max(1) as f64
                    );
                }
                actix_rt::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let interrupted = tokio::select! {
        () = status.finished() => false,
        signal = wait_for_signal() => { signal.map_err(ReplayError::Signals)?; true }
    };
    if interrupted {
        bar.suspend(|| log::info!("Stop requested; writing the final checkpoint."));
        if tokio::time::timeout(SHUTDOWN_PATIENCE, pipeline.consumer.send(Shutdown))
            .await
            .is_err()
        {
            log::warn!("The final checkpoint did not commit within {SHUTDOWN_PATIENCE:?}.");
        }
    }
    ticker.abort();
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let events = metrics.events_consumed.get();
    let rejected = summary_of_rejections(&metrics);
    actix_rt::System::current().stop();
    if let Some(error) = status.error() {
        return Err(ReplayError::Halted(error));
    }
    let verb = if interrupted { "stopped" } else { "done" };
    eprintln!(
        "replay {verb}: {events} events in {:.1}s ({:.0} events/s); dead letters: {rejected}; source {source}",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64().max(1e-3),
    );
    if interrupted {
        return Err(ReplayError::Interrupted);
    }
    Ok(())
}

/// A bar of bytes read, drawn on stderr when it is a terminal and `mode`
/// is not `never`.
fn progress_bar(mode: &str, total_bytes: u64) -> ProgressBar {
    let target = match mode {
        "never" => ProgressDrawTarget::hidden(),
        // Draws nothing when stderr is not a terminal.
        _ => ProgressDrawTarget::stderr_with_hz(5),
    };
    let bar = ProgressBar::with_draw_target(Some(total_bytes), target);
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {msg} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar
}

/// `reason=count` of this run's dead letters, or `none`.
fn summary_of_rejections(metrics: &Metrics) -> String {
    let parts: Vec<String> = RejectReason::ALL
        .iter()
        .map(|r| {
            (
                r,
                metrics
                    .events_rejected
                    .with_label_values(&[r.as_str()])
                    .get(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{}={n}", r.as_str()))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(" ")
    }
}
