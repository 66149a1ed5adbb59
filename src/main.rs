//! `pear-server`: parses the command line, loads the config, starts logging,
//! loads the models and runs the reactor. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use pear_server::config::{Config, Overrides};
use pear_server::reactor::{Reactor, ReactorOptions, StopHandle};
use pear_server::service::{Service, StartError};
use pear_server::state::{self, SavedState};

/// Pear defect inspection server (TCP, JSON; see README.md for the protocol).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Config file (YAML).
    #[arg(long, default_value = "config/server_config.yaml")]
    config: PathBuf,
    /// Address to listen on (overrides server.host).
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on (overrides server.port; 0 picks a free port).
    #[arg(long)]
    port: Option<u16>,
    /// DEBUG, INFO, WARNING, ERROR (overrides logging.level).
    #[arg(long)]
    log_level: Option<String>,
    /// Validate the config, print the effective config and exit (0 ok, 2 bad).
    #[arg(long)]
    check_config: bool,
}

/// Exit code for a bad config or a missing runtime dependency.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        host: cli.host,
        port: cli.port,
        log_level: cli.log_level,
    };
    let effective = match state::load_effective(&cli.config, &overrides) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("pear-server: config error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let state::Effective {
        config,
        config_model,
        restored,
        warnings,
    } = effective;
    let state_path = config.state_file();
    if cli.check_config {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        print!("{}", config.to_yaml());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = pear_server::logging::init(&config) {
        eprintln!("pear-server: cannot start logging: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    for w in &warnings {
        log::warn!("{w}");
    }
    if restored != SavedState::default() {
        log::info!("restored from {}: {restored:?}", state_path.display());
    }
    match run(config, config_model, restored) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("pear-server: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn run(
    config: Config,
    config_model: PathBuf,
    mut restored: SavedState,
) -> Result<(), Box<dyn std::error::Error>> {
    let started = std::time::Instant::now();
    let library =
        pear_server::inference::runtime::init_runtime(config.inference.ort_library.as_deref())?;
    log::info!("ONNX Runtime loaded from {}", library.display());
    rayon::ThreadPoolBuilder::new()
        .num_threads(config.workers())
        .thread_name(|i| format!("pear-worker-{i}"))
        .build_global()?;
    let reactors = config.server.reactors.max(1);
    let service = Arc::new(start_service(config, config_model, &mut restored)?);
    service.restore(restored);

    // The first reactor binds the configured address (port 0 picks one); the
    // others bind the very port it got, through SO_REUSEPORT.
    let first_stop_slot: Arc<std::sync::Mutex<Vec<StopHandle>>> = Arc::default();
    let siblings_for_drain = Arc::clone(&first_stop_slot);
    let options = ReactorOptions {
        on_drain: Some(Box::new(move || {
            // Every reactor drains when the signal-owning one does.
            let handles = match siblings_for_drain.lock() {
                Ok(h) => h.clone(),
                Err(p) => p.into_inner().clone(),
            };
            for h in handles {
                h.stop();
            }
            pear_server::notify::stopping();
        })),
        on_hangup: Some(Box::new(|| {
            // Opening a file may block: never on the reactor.
            rayon::spawn(|| match pear_server::logging::reopen() {
                Ok(()) => log::info!("log file reopened"),
                Err(pear_server::logging::LogError::NoFile) => {}
                Err(e) => log::warn!("cannot reopen the log file: {e}"),
            });
        })),
        ..ReactorOptions::default()
    };
    let (first, first_stop) = Reactor::bind_with(Arc::clone(&service), options)?;
    let addr = first.local_addr();
    if let Some(m) = first.metrics_addr() {
        log::info!("metrics and health on http://{m}/metrics, /healthz, /readyz");
    }
    let mut threads = Vec::new();
    for i in 1..reactors {
        let (reactor, stop) =
            Reactor::bind_with(Arc::clone(&service), ReactorOptions::sibling(addr))?;
        match first_stop_slot.lock() {
            Ok(mut h) => h.push(stop.clone()),
            Err(p) => p.into_inner().push(stop.clone()),
        }
        let thread = std::thread::Builder::new()
            .name(format!("pear-reactor-{i}"))
            .spawn(move || reactor.run(stop))?;
        threads.push(thread);
    }
    log::info!(
        "pear-server {} ready on {addr} ({reactors} reactor(s)) in {:.0} ms (model {}, images {})",
        env!("CARGO_PKG_VERSION"),
        started.elapsed().as_secs_f64() * 1000.0,
        service.current_model(),
        service.image_folder().display()
    );
    // A machine-readable line for scripts and tests.
    println!("listening on {addr}");
    pear_server::notify::ready(&format!("listening on {addr}"));
    let result = first.run(first_stop);
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::error!("a reactor stopped with an error: {e}"),
            Err(_) => log::error!("a reactor thread panicked"),
        }
    }
    result?;
    log::info!("stopped");
    Ok(())
}

/// Starts the service; when a model restored from the state file cannot be
/// loaded, warns and falls back to the config's model (`config_model`)
/// instead of refusing to start, and forgets the restored model.
fn start_service(
    mut config: Config,
    config_model: PathBuf,
    restored: &mut SavedState,
) -> Result<Service, StartError> {
    if restored.model.is_none() {
        return Service::start(config);
    }
    let fallback = config.clone();
    match Service::start(config) {
        Err(StartError::Model(e)) => {
            log::warn!(
                "state file: cannot load the restored model ({e}); using model.model_path from the config"
            );
            restored.model = None;
            config = fallback;
            config.model.model_path = config_model;
            Service::start(config)
        }
        other => other,
    }
}
