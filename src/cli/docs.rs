//! `isoswitch completions SHELL` and `isoswitch man`: the shell completion script and the
//! manual pages, generated from the same clap definition as the parser, so they never
//! describe flags the binary does not have.
//! May import: nothing.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// The subcommand whose page to write (isoswitch-COMMAND(1)); without it, isoswitch(1).
    pub command: Option<String>,
    /// Write every page (isoswitch.1, isoswitch-run.1, ...) into this directory instead of
    /// one page on stdout.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub out_dir: Option<PathBuf>,
}

/// `cli`, the clap command tree as the binary parses it, built (display names set).
fn command(cli: clap::Command) -> clap::Command {
    let mut cmd = cli.disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// The page of `cmd` (isoswitch or one of its subcommands), naming the version it documents.
fn manual(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd)
        .source(concat!("isoswitch ", env!("CARGO_PKG_VERSION")))
        .manual("isoswitch manual")
}

/// Completions for `cli`, the whole command tree.
pub fn completions(a: CompletionsArgs, cli: clap::Command) -> ExitCode {
    let mut cmd = command(cli);
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "isoswitch", &mut out);
    write_stdout(&out, "completions")
}

/// Manual pages for `cli`, the whole command tree.
pub fn man(a: ManArgs, cli: clap::Command) -> ExitCode {
    let cmd = command(cli);
    if let Some(dir) = a.out_dir {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("isoswitch man: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        let mut pages = vec![cmd.clone()];
        pages.extend(cmd.get_subcommands().cloned());
        for page in pages {
            let man = manual(page);
            match man.generate_to(&dir) {
                Ok(path) => println!("{}", path.display()),
                Err(e) => {
                    eprintln!("isoswitch man: cannot write {}: {e}", dir.join(man.get_filename()).display());
                    return ExitCode::FAILURE;
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    let page = match &a.command {
        None => cmd,
        Some(name) => match cmd.find_subcommand(name) {
            Some(sub) => sub.clone(),
            None => {
                let known: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
                eprintln!("isoswitch man: no command `{name}`; the commands are: {}", known.join(", "));
                return ExitCode::from(2);
            }
        },
    };
    let mut out = Vec::new();
    if let Err(e) = manual(page).render(&mut out) {
        eprintln!("isoswitch man: {e}");
        return ExitCode::FAILURE;
    }
    write_stdout(&out, "man")
}

/// Write all of `bytes` to stdout; a closed pipe (`| head`) is not an error worth a message.
fn write_stdout(bytes: &[u8], what: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("isoswitch {what}: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}
