//! Build script: decides whether the PostgreSQL tests run. They need a server named by
//! `ISOSWITCH_TEST_PG` (`.ci/pg-setup` starts one). Without it they are compiled with
//! `#[ignore]` (cfg `isoswitch_no_pg`), so `cargo test` counts them as ignored instead of
//! reporting a pass it did not earn. Under CI (`CI` set, not `false`) they are never
//! ignored: a CI run without a server fails on them.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(isoswitch_no_pg)");
    println!("cargo::rustc-check-cfg=cfg(isoswitch_no_pg_tls)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=ISOSWITCH_TEST_PG");
    println!("cargo::rerun-if-env-changed=ISOSWITCH_TEST_PG_CA");
    println!("cargo::rerun-if-env-changed=CI");
    let pg = std::env::var("ISOSWITCH_TEST_PG").is_ok_and(|v| !v.is_empty());
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    if !pg && !ci {
        println!("cargo::rustc-cfg=isoswitch_no_pg");
    }
    // The TLS tests also need the CA of that server's certificate (`ISOSWITCH_TEST_PG_CA`).
    let ca = std::env::var("ISOSWITCH_TEST_PG_CA").is_ok_and(|v| !v.is_empty());
    if !(ci || pg && ca) {
        println!("cargo::rustc-cfg=isoswitch_no_pg_tls");
    }
}
