//! `lexumctl`'s command line: raw flags ([`args`]) → validated
//! [`settings::Settings`] → one module per subcommand group, printing
//! through [`output`].

/// `println!` for command output: a reader that went away ends `lexumctl`
/// quietly instead of panicking (see [`output::write_stdout`]).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for command output, like [`outln`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(format_args!($($arg)*))
    };
}

mod args;
mod check;
mod cluster;
mod goals;
mod output;
mod plan;
mod provenance;
mod settings;
mod sim_worker;
mod state;

use args::{Cli, ClusterAction, Command};
use clap::{CommandFactory, Parser};
use lexum_client::{Client, ClientError};
use settings::Settings;
use std::process::ExitCode;

/// Why a command failed; decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Exit 1, with a one-line message.
    User(String),
    /// Exit 2, with a one-line message.
    Unavailable(String),
    /// Exit 1; the diagnostics are already printed.
    Reported,
    /// Exit 3: `plan` predicts a trap or a failure (its report is printed).
    Gated,
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Failure {
        if err.is_user_error() {
            Failure::User(err.to_string())
        } else {
            Failure::Unavailable(err.to_string())
        }
    }
}

/// Runs `lexumctl` and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let informational =
                matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion);
            let _ = e.print();
            return if informational { ExitCode::SUCCESS } else { ExitCode::from(1) };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Reported) => ExitCode::from(1),
        Err(Failure::Gated) => ExitCode::from(3),
        Err(Failure::User(message)) => {
            eprintln!("lexumctl: error: {}", one_line(&message));
            ExitCode::from(1)
        }
        Err(Failure::Unavailable(message)) => {
            eprintln!("lexumctl: error: {}", one_line(&message));
            ExitCode::from(2)
        }
    }
}

/// Multi-line messages are rendered diagnostics: keep them whole.
fn one_line(message: &str) -> String {
    message.trim_end().to_string()
}

fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Completion { shell } = cli.command {
        let mut command = Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, "lexumctl", &mut script);
        out!("{}", String::from_utf8_lossy(&script));
        return Ok(());
    }
    let settings = Settings::load(&cli.global)?;
    if let Command::Check { files } = &cli.command {
        return check::run(&settings, files);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::User(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let client = Client::new_lazy(settings.client.clone())?;
        match cli.command {
            Command::Submit { file } => state::submit(&settings, &client, &file).await,
            Command::Plan(flags) => plan::run(&settings, &client, &flags).await,
            Command::Set { assignments, caused_by, create } => {
                state::set(&settings, &client, &assignments, caused_by, create).await
            }
            Command::Create { items } => state::create(&settings, &client, &items).await,
            Command::Delete { instances } => state::delete(&settings, &client, &instances).await,
            Command::Why { target, last } => provenance::why(&settings, &client, &target, last).await,
            Command::Explain { target } => provenance::explain(&settings, &client, &target).await,
            Command::Get { domain, limit, offset } => state::get(&settings, &client, &domain, offset, limit).await,
            Command::Goals(flags) => goals::list(&settings, &client, &flags).await,
            Command::Watch { from, count, duration } => goals::watch(&settings, &client, from, count, duration).await,
            Command::History { limit } => goals::history(&settings, &client, limit).await,
            Command::Release { target } => goals::release(&settings, &client, &target).await,
            Command::Retry { target } => goals::retry(&settings, &client, &target).await,
            Command::Status => cluster::status(&settings, &client).await,
            Command::Cluster { action } => match action {
                ClusterAction::Members => cluster::members(&settings, &client).await,
                ClusterAction::Add { id, address } => cluster::add(&settings, &client, id, &address).await,
                ClusterAction::Remove { id } => cluster::remove(&settings, &client, id).await,
            },
            Command::Replay => cluster::replay(&settings, &client).await,
            Command::Worker(flags) => sim_worker::run(&settings, client, flags).await,
            Command::Check { .. } | Command::Completion { .. } => Ok(()),
        }
    })
}
