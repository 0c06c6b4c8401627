#![forbid(unsafe_code)]

/// The process allocator. Under load glibc's malloc took about a fifth of the switch's CPU
/// (free-list consolidation across the runtime's threads); mimalloc's per-thread pages
/// cost a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    isoswitch::cli::main()
}
