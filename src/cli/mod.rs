//! The `isoswitch` command line: one binary, `clap` subcommands. This is the edge where
//! errors become messages for people and exit statuses; it may use every layer.
//! May import: nothing.

mod codec_tools;
mod demo;
mod docs;
mod journal;
mod notify;
mod run;
mod settle;
mod sim;

pub use codec_tools::{decode_line, encode_line, hex_lower, hex_to_bytes};
pub use run::{RunArgs, effective_config};

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// isoswitch: an ISO 8583 terminal transaction switch.
#[derive(Parser, Debug)]
#[command(name = "isoswitch", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Decode hex messages (one per line on stdin) to JSON lines on stdout.
    Decode(codec_tools::DecodeArgs),
    /// Encode JSON messages (one per line on stdin) to hex lines on stdout.
    Encode(codec_tools::EncodeArgs),
    /// Journal retention: export a business day to a file, purge exported old days.
    Journal(journal::JournalArgs),
    /// Per-merchant settlement (gross, refunds, fees, net) of one business day.
    Settle(settle::SettleArgs),
    /// Run the switch.
    #[command(after_long_help = run::OPERATING_NOTES)]
    Run(run::RunArgs),
    /// A switch, simulated issuers and simulated terminals in one process: a short mixed
    /// workload and its summary.
    Demo(demo::DemoArgs),
    /// Run a simulated issuer (bank host) that answers by simple rules.
    SimIssuer(sim::SimIssuerArgs),
    /// Run simulated terminals against a switch or a simulated issuer and report.
    SimTerminal(Box<sim::SimTerminalArgs>),
    /// Write the shell completion script for SHELL (bash, zsh, fish, elvish, powershell) to stdout.
    Completions(docs::CompletionsArgs),
    /// Write the manual page (roff) to stdout, or every page into a directory.
    Man(docs::ManArgs),
}

/// Run the command line; returns the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Decode(a) => codec_tools::decode(a),
        Command::Encode(a) => codec_tools::encode(a),
        Command::Journal(a) => journal::run(a),
        Command::Settle(a) => settle::run(a),
        Command::Run(a) => run::run(a),
        Command::Demo(a) => demo::run(a),
        Command::SimIssuer(a) => sim::sim_issuer(a),
        Command::SimTerminal(a) => sim::sim_terminal(*a),
        Command::Completions(a) => docs::completions(a, Cli::command()),
        Command::Man(a) => docs::man(a, Cli::command()),
    }
}
