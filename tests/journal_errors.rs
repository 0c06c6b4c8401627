//! A PostgreSQL journal that cannot be opened says why in the server's own words (the
//! missing database named, with its SQLSTATE), and a server that is not there says
//! "refused", not only "db error". The first runs against `ISOSWITCH_TEST_PG` (a libpq-style
//! connection string) and is ignored when it is unset; under CI it must be set.

#[path = "common/pg.rs"]
mod pg;

use isoswitch::journal::{Journal, JournalConfig};

fn open_err(url: String) -> String {
    match Journal::open(&JournalConfig::Postgres { url }) {
        Ok(_) => panic!("the journal opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
#[cfg_attr(isoswitch_no_pg, ignore = "needs ISOSWITCH_TEST_PG (see .ci/pg-setup)")]
fn a_missing_database_is_named_with_the_servers_message() {
    let base = pg::base();
    let e = open_err(format!("{base} dbname=isoswitch_no_such_estate"));
    assert!(e.contains("database \"isoswitch_no_such_estate\" does not exist"), "{e}");
    assert!(e.contains("3D000"), "the SQLSTATE code is kept: {e}");
}

#[test]
fn a_server_that_is_not_there_is_said_so() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = open_err(format!("host=127.0.0.1 port={port} user=isoswitch dbname=estate connect_timeout=5"));
    assert!(e.to_lowercase().contains("refused"), "the cause is kept: {e}");
}
