#![forbid(unsafe_code)]

/// The process allocator. Under load glibc's malloc took about a fifth of the switch's CPU
/// (free-list consolidation across the runtime's threads); mimalloc's per-thread pages
/// cost a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    no_huge_pages();
    isoswitch::cli::main()
}

/// No transparent huge pages for this process. mimalloc asks for them, and the first touch
/// of each 2 MiB page is zeroed on the request path: a new switch's first traffic stalled
/// for about 250 ms while the duplicate registry's shards took their memory, and the
/// process held about three times the memory it used. Throughput is the same without them
/// (`benches/load.sh off 64 8 5`).
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("isoswitch: could not turn transparent huge pages off ({e}); carrying on");
    }
}
