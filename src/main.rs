//! `pear-server`: parses the command line, loads the config, starts logging,
//! loads the models and runs the reactor. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use pear_server::config::{Config, Overrides};
use pear_server::reactor::Reactor;
use pear_server::service::Service;

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
    let loaded = match Config::load(&cli.config, &overrides) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("pear-server: config error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let config = loaded.config;
    if cli.check_config {
        for w in &loaded.warnings {
            eprintln!("warning: {w}");
        }
        print!("{}", config.to_yaml());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = pear_server::logging::init(&config) {
        eprintln!("pear-server: cannot start logging: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("pear-server: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let started = std::time::Instant::now();
    let library =
        pear_server::inference::runtime::init_runtime(config.inference.ort_library.as_deref())?;
    log::info!("ONNX Runtime loaded from {}", library.display());
    rayon::ThreadPoolBuilder::new()
        .num_threads(config.workers())
        .thread_name(|i| format!("pear-worker-{i}"))
        .build_global()?;
    let service = Arc::new(Service::start(config)?);
    let (reactor, stop) = Reactor::bind(Arc::clone(&service))?;
    let addr = reactor.local_addr();
    log::info!(
        "pear-server {} ready on {addr} in {:.0} ms (model {}, images {})",
        env!("CARGO_PKG_VERSION"),
        started.elapsed().as_secs_f64() * 1000.0,
        service.current_model(),
        service.image_folder().display()
    );
    // A machine-readable line for scripts and tests.
    println!("listening on {addr}");
    reactor.run(stop)?;
    log::info!("stopped");
    Ok(())
}
