#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    isoswitch::cli::main()
}
