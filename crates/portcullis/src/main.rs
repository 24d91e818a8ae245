//! The `portcullis` binary: parse arguments, set up logging and the runtime, hand over.

use clap::Parser;
use portcullis::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();

    if let Command::Keys { config, action } = &cli.command {
        use portcullis::cli::KeysAction;
        use portcullis::keys::cli::{KeysCmd, run};
        let Some(config) = config else {
            eprintln!("portcullis keys needs -c FILE (the config whose state.store holds the keys)");
            return ExitCode::from(2);
        };
        let cmd = match action.clone() {
            KeysAction::Create { plan, name } => KeysCmd::Create { name, plan },
            KeysAction::List => KeysCmd::List,
            KeysAction::Update { id, plan, status } => KeysCmd::Update { id, plan, status },
            KeysAction::Revoke { id } => KeysCmd::Revoke { id },
        };
        return match run(config, cmd) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Waf { action } = &cli.command {
        return portcullis::waf_cli::run(action);
    }
    if let Command::Schema = &cli.command {
        println!("{}", portcullis::config::schema());
        return ExitCode::SUCCESS;
    }
    if let Command::Lint { config, format, strict } = &cli.command {
        let loaded = match portcullis::config::load_file(config) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        let findings = portcullis::lint::lint(&loaded);
        let out = match format {
            portcullis::cli::LintFormat::Text => portcullis::lint::text(&findings),
            portcullis::cli::LintFormat::Json => portcullis::lint::json(&findings),
            portcullis::cli::LintFormat::Sarif => portcullis::lint::sarif(&findings),
        };
        println!("{}", out.trim_end());
        return ExitCode::from(portcullis::lint::exit_code(&findings, *strict));
    }
    if let Command::Validate { config } = &cli.command {
        return match portcullis::config::load_runtime(config, None) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }

    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config, no_watch, strict } => {
                if !lint_at_start(&config, strict) {
                    return Err(anyhow::anyhow!(
                        "lint errors and --strict: not starting (see `portcullis lint -c FILE`)"
                    ));
                }
                run(&config, !no_watch).await
            }
            Command::Demo => portcullis::demo::run().await.map_err(anyhow::Error::from),
            Command::Validate { .. }
            | Command::Keys { .. }
            | Command::Lint { .. }
            | Command::Schema
            | Command::Waf { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs what `portcullis lint` finds (compile errors are left to `start`, which compiles the
/// config anyway). Returns false when `strict` and there are errors.
fn lint_at_start(config: &std::path::Path, strict: bool) -> bool {
    use portcullis::lint::Severity;
    let Ok(loaded) = portcullis::config::load_file(config) else { return true };
    let findings = portcullis::lint::checks(&loaded);
    for f in &findings {
        let at = format!("{}:{}", f.file, f.line);
        match f.severity {
            Severity::Error => tracing::error!(lint = f.id, rule = f.rule, at, fix = f.fix, "{}", f.message),
            Severity::Warning => tracing::warn!(lint = f.id, rule = f.rule, at, fix = f.fix, "{}", f.message),
            Severity::Info => tracing::info!(lint = f.id, rule = f.rule, at, fix = f.fix, "{}", f.message),
        }
    }
    !(strict && findings.iter().any(|f| f.severity == Severity::Error))
}

async fn run(config: &std::path::Path, watch: bool) -> anyhow::Result<()> {
    let hup = portcullis::reload::take_sighup()?;
    let (running, tasks) = portcullis::start(config, watch).await?;
    let _hup = portcullis::reload::on_sighup(running.gateway.clone(), hup);
    wait_for_stop_signal().await?;
    tracing::info!("shutting down: no new connections; in-flight requests may finish");
    running.shutdown().await;
    for t in tasks {
        t.abort();
    }
    Ok(())
}

async fn wait_for_stop_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
