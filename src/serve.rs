//! `streamstats serve`: the pipeline actors and the HTTP API in one actix
//! System. Migrations run first; SIGTERM or SIGINT writes a final
//! checkpoint and exits 0.

use std::time::Duration;

use actix_web::{web, App, HttpServer};
use streamstats_actors::config::{AssignmentMode, OffsetReset, PipelineConfig};
use streamstats_actors::messages::Shutdown;
use streamstats_actors::metrics::Metrics;
use streamstats_actors::{pipeline, store};

use crate::cli::ServeArgs;
use crate::http;

/// Errors that stop `serve`, named after the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database pool could not be built.
    #[error("DATABASE_URL: {0}")]
    Pool(#[from] store::StoreError),
    /// Migrations could not be applied before the deadline.
    #[error("cannot migrate the database at DATABASE_URL: {0}")]
    Migrate(String),
    /// The metrics registry rejected a metric.
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The HTTP listener could not bind.
    #[error("HTTP_ADDR: cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// The HTTP metrics middleware could not be built.
    #[error("cannot build the HTTP metrics middleware: {0}")]
    HttpMetrics(String),
    /// The database holds another consumer group's results.
    #[error("KAFKA_GROUP_ID: {0}")]
    OtherGroup(String),
    /// A setting is out of range.
    #[error("{name}: {reason}")]
    Setting { name: &'static str, reason: String },
    /// Waiting for signals failed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// How long start-up waits for the database to accept the migrations.
const MIGRATE_PATIENCE: Duration = Duration::from_secs(60);
/// How long shutdown waits for the final checkpoint.
const SHUTDOWN_PATIENCE: Duration = Duration::from_secs(30);

/// Runs the service until SIGTERM/SIGINT.
pub fn run(args: ServeArgs) -> Result<(), ServeError> {
    actix_rt::System::new().block_on(serve(args))
}

/// This host's name, for the default instance id.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn pipeline_config(args: &ServeArgs) -> Result<PipelineConfig, ServeError> {
    let mut cfg = PipelineConfig::new(&args.kafka.kafka_brokers, &args.kafka.kafka_topic);
    cfg.group_id = args.kafka_group_id.clone();
    cfg.assignment = if args.kafka_assignment == "group" {
        AssignmentMode::Group
    } else {
        AssignmentMode::SelfAssign
    };
    // Two live instances on one host cannot share an HTTP port, and a
    // restarted one keeps it: host and port name an instance stably.
    cfg.instance_id = args
        .instance_id
        .clone()
        .unwrap_or_else(|| format!("{}:{}", host_name(), args.http_addr.port()));
    cfg.owner_lease = args.owner_lease;
    cfg.group_instance_id = args.kafka_group_instance_id.clone();
    cfg.max_future_skew =
        chrono::TimeDelta::from_std(args.max_future_skew).map_err(|e| ServeError::Setting {
            name: "MAX_FUTURE_SKEW",
            reason: e.to_string(),
        })?;
    if args.owner_lease <= args.checkpoint_interval * 2 {
        return Err(ServeError::Setting {
            name: "OWNER_LEASE",
            reason: format!(
                "{:?} must be more than twice CHECKPOINT_INTERVAL ({:?}), which refreshes it",
                args.owner_lease, args.checkpoint_interval
            ),
        });
    }
    cfg.offset_reset = if args.kafka_offset_reset == "latest" {
        OffsetReset::Latest
    } else {
        OffsetReset::Earliest
    };
    cfg.allowed_lateness = args.allowed_lateness;
    cfg.idle_finalize = args.idle_finalize;
    cfg.checkpoint_interval = args.checkpoint_interval;
    cfg.max_uncommitted_events = args.max_uncommitted_events;
    cfg.checkpoint_events = (args.max_uncommitted_events / 4).max(1);
    cfg.faults = args.inject_panic;
    if let Some(plan) = cfg.faults {
        log::warn!("Fault injection is ON: {plan:?}. Never use this outside tests.");
    }
    Ok(cfg)
}

pub(crate) async fn migrate(pool: store::Pool) -> Result<(), ServeError> {
    let deadline = std::time::Instant::now() + MIGRATE_PATIENCE;
    loop {
        let pool = pool.clone();
        let attempt = web::block(move || -> Result<Vec<String>, String> {
            let mut conn = pool.get().map_err(|e| e.to_string())?;
            store::run_migrations(&mut conn).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match attempt {
            Ok(applied) => {
                log::info!(
                    "Database schema is current ({} migrations applied now).",
                    applied.len()
                );
                return Ok(());
            }
            Err(e) if std::time::Instant::now() < deadline => {
                log::warn!("Database not ready for migrations ({e}); retrying.");
                actix_rt::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(ServeError::Migrate(e)),
        }
    }
}

/// Start-up refuses a database another consumer group writes to.
pub(crate) async fn check_group(pool: store::Pool, group_id: String) -> Result<(), ServeError> {
    web::block(move || {
        let mut conn = pool.get()?;
        store::check_group(&mut conn, &group_id)
    })
    .await
    .map_err(|e| ServeError::Migrate(e.to_string()))?
    .map_err(|e| match e {
        store::StoreError::OtherGroup { .. } => ServeError::OtherGroup(e.to_string()),
        other => ServeError::Migrate(other.to_string()),
    })
}

async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    let cfg = pipeline_config(&args)?;
    let pool = store::pool(&args.db.database_url, args.database_pool_size)?;
    migrate(pool.clone()).await?;
    check_group(pool.clone(), cfg.group_id.clone()).await?;

    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry)?;
    let pipeline = pipeline::start(cfg, pool.clone(), metrics.clone());
    let state = web::Data::new(http::AppState::new(
        pool.clone(),
        metrics.clone(),
        pipeline.status.clone(),
        registry.clone(),
        args.checkpoint_interval,
        args.api_cache_ttl.unwrap_or(args.checkpoint_interval),
    )?);
    crate::retention::start(
        pool.clone(),
        metrics.clone(),
        crate::retention::RetentionConfig {
            windows: args.retention,
            dead_letters: args.dead_letter_retention,
            interval: args.retention_interval,
        },
    );
    let prom = http::request_metrics(registry).map_err(ServeError::HttpMetrics)?;
    let addr = args.http_addr;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(prom.clone())
            .app_data(state.clone())
            .configure(http::routes)
    })
    .workers(2)
    .disable_signals()
    .bind(addr)
    .map_err(|source| ServeError::Bind { addr, source })?
    .run();
    let server_handle = server.handle();
    actix_rt::spawn(server);
    log::info!("Serving the API and /prometheus on http://{addr}.");

    wait_for_signal().await.map_err(ServeError::Signals)?;
    log::info!("Stop requested; writing the final checkpoint.");
    match tokio::time::timeout(SHUTDOWN_PATIENCE, pipeline.consumer.send(Shutdown)).await {
        Ok(Ok(())) => log::info!("Final checkpoint committed."),
        Ok(Err(e)) => log::warn!("The consumer was gone at shutdown ({e})."),
        Err(_) => log::warn!(
            "The final checkpoint did not commit within {SHUTDOWN_PATIENCE:?}; the next start resumes from the previous one."
        ),
    }
    server_handle.stop(true).await;
    actix_rt::System::current().stop();
    log::info!("streamstats stopped.");
    Ok(())
}

/// Waits for SIGTERM or SIGINT.
pub(crate) async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
