//! The PostgreSQL server of the tests, named by `ISOSWITCH_TEST_PG` (a libpq-style
//! connection string for a user that may create databases; `.ci/pg-setup` starts one).
//! Tests that need it carry
//! `#[cfg_attr(isoswitch_no_pg, ignore = "needs ISOSWITCH_TEST_PG (see .ci/pg-setup)")]`:
//! the build script sets that cfg when the variable is unset outside CI, so they show as
//! ignored; under CI, or when run with `--ignored`, a missing variable fails them here.

/// The connection string; panics (fails the test) with what to do when it is unset.
pub fn base() -> String {
    match std::env::var("ISOSWITCH_TEST_PG") {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "ISOSWITCH_TEST_PG is not set: this test needs a PostgreSQL server (CI must provide one; \
             `. .ci/pg-setup` starts one on 127.0.0.1 and exports the variable)"
        ),
    }
}

/// A fresh database `name` on the server (dropped first if a previous run left it), and
/// the connection string that reaches it.
#[allow(dead_code)] // not every test file that includes this module creates databases
pub async fn fresh_database(name: &str) -> String {
    let base = base();
    let (client, conn) =
        tokio_postgres::connect(&base, tokio_postgres::NoTls).await.expect("connect to ISOSWITCH_TEST_PG");
    tokio::spawn(conn);
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    format!("{base} dbname={name}")
}
