//! `lexumd`: run one node of a Lexum cluster.

use clap::Parser;
use lexum_node::config::{Flags, Settings};
use std::process::ExitCode;

fn main() -> ExitCode {
    let flags = Flags::parse();
    let settings = match Settings::load(flags) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("lexumd: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(settings.json_logs);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lexumd: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(lexum_node::node::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("lexumd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEXUM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
