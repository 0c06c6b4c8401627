//! The PostgreSQL journal over TLS: `sslmode=verify-full sslrootcert=CA` gives an encrypted
//! connection (the server says so in `pg_stat_ssl`), a string without `sslmode` stays
//! plain, and a server whose certificate another CA signed, or that does not name the
//! host, is refused with the reason (`verify-ca` accepts the latter). The store-and-forward
//! queue connects the same way.
//!
//! Needs `ISOSWITCH_TEST_PG` and `ISOSWITCH_TEST_PG_CA` (the CA of that server's
//! certificate), which `.ci/pg-setup` exports; without them the tests are compiled as
//! ignored (`build.rs`), except under CI where their absence fails them.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use isoswitch::journal::saf_store::{SafKey, SqlSaf};
use isoswitch::journal::{Decided, SettleCycle};
use isoswitch::journal::{Journal, JournalConfig, Query, TxnRecord};
use isoswitch::rc::ResponseCode;
use isoswitch::route::txn::TxnType;

/// The server, its CA file and an admin client.
async fn server(test: &str) -> (String, String, tokio_postgres::Client) {
    let (Ok(base), Ok(ca)) = (std::env::var("ISOSWITCH_TEST_PG"), std::env::var("ISOSWITCH_TEST_PG_CA"))
    else {
        panic!("{test}: ISOSWITCH_TEST_PG and ISOSWITCH_TEST_PG_CA must both be set (see .ci/pg-setup)");
    };
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    (base, ca, client)
}

/// A fresh database.
async fn database(admin: &tokio_postgres::Client) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!("isoswitch_tls_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    name
}

async fn drop_database(admin: &tokio_postgres::Client, name: &str) {
    let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

/// Whether each connection to database `name` is TLS, as the server sees it.
async fn ssl_of(admin: &tokio_postgres::Client, name: &str) -> Vec<bool> {
    let rows = admin
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = $1",
            &[&name],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get::<_, bool>(0)).collect()
}

async fn open(url: String) -> Result<Journal, String> {
    let cfg = JournalConfig::Postgres { url };
    tokio::task::spawn_blocking(move || Journal::open(&cfg)).await.unwrap().map_err(|e| e.to_string())
}

fn record(stan: u32) -> TxnRecord {
    TxnRecord {
        switch_id: "tls".into(),
        received_at: isoswitch::time::UnixMs(1_795_479_740_000),
        business_date: "20261124".into(),
        terminal_id: "TERM0001".into(),
        merchant_id: "MERCHANT0000001".into(),
        stan: format!("{stan:06}").into(),
        rrn: Some(format!("RRN{stan:09}").into()),
        transmission_time: "1124002200".into(),
        mti: "0200".into(),
        txn_type: TxnType::Purchase.into(),
        amount: 1200,
        decision: Decided::Forward,
        rc: Some(ResponseCode::APPROVED),
        settle_cycle: SettleCycle::T1,
        ..TxnRecord::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    isoswitch_no_pg_tls,
    ignore = "needs ISOSWITCH_TEST_PG and ISOSWITCH_TEST_PG_CA (see .ci/pg-setup)"
)]
async fn verify_full_is_encrypted_and_a_plain_string_stays_plain() {
    let (base, ca, admin) = server("verify_full_is_encrypted_and_a_plain_string_stays_plain").await;
    let (tls_db, plain_db) = (database(&admin).await, database(&admin).await);

    let j = open(format!("{base} dbname={tls_db} sslmode=verify-full sslrootcert='{ca}'")).await.unwrap();
    assert!(j.record(record(1)).await.unwrap());
    let rows = j.query(Query::ByRrn("RRN000000001".into())).await.unwrap();
    assert_eq!(rows.len(), 1);
    let seen = ssl_of(&admin, &tls_db).await;
    assert!(!seen.is_empty() && seen.iter().all(|&s| s), "TLS journal connections: {seen:?}");

    // The store-and-forward queue, on the same string, connects over TLS too.
    let saf_cfg = JournalConfig::Postgres {
        url: format!("{base} dbname={tls_db} sslmode=verify-full sslrootcert={ca}"),
    };
    let saf = tokio::task::spawn_blocking(move || SqlSaf::open(&saf_cfg, SafKey::new(&[7u8; 32]).unwrap()))
        .await
        .unwrap()
        .map_err(|e| e.to_string())
        .unwrap();
    let seen = ssl_of(&admin, &tls_db).await;
    assert!(seen.len() >= 2 && seen.iter().all(|&s| s), "journal and queue connections: {seen:?}");
    drop(saf);

    let p = open(format!("{base} dbname={plain_db}")).await.unwrap();
    assert!(p.record(record(2)).await.unwrap());
    let seen = ssl_of(&admin, &plain_db).await;
    assert!(!seen.is_empty() && seen.iter().all(|&s| !s), "plain journal connections: {seen:?}");
    drop((j, p));
    drop_database(&admin, &tls_db).await;
    drop_database(&admin, &plain_db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    isoswitch_no_pg_tls,
    ignore = "needs ISOSWITCH_TEST_PG and ISOSWITCH_TEST_PG_CA (see .ci/pg-setup)"
)]
async fn a_wrong_ca_or_host_name_is_refused_with_the_reason() {
    let (base, ca, admin) = server("a_wrong_ca_or_host_name_is_refused_with_the_reason").await;
    let db = database(&admin).await;
    let pki = common::Pki::new("pg-tls");
    let stranger = pki.ca("stranger");

    let e = open(format!("{base} dbname={db} sslmode=verify-full sslrootcert={}", stranger.cert.display()))
        .await
        .unwrap_err();
    assert!(e.contains("invalid peer certificate") && e.contains("UnknownIssuer"), "{e}");
    // verify-ca checks the chain as well.
    let e = open(format!("{base} dbname={db} sslmode=verify-ca sslrootcert={}", stranger.cert.display()))
        .await
        .unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");

    // The right CA, but a host name the server's certificate does not carry (the address
    // is the same server's).
    assert!(base.contains("host=127.0.0.1"), "{base}");
    let renamed = base.replace("host=127.0.0.1", "hostaddr=127.0.0.1 host=journal.invalid");
    let e = open(format!("{renamed} dbname={db} sslmode=verify-full sslrootcert={ca}")).await.unwrap_err();
    assert!(e.contains("not valid for name") && e.contains("journal.invalid"), "{e}");
    let j = open(format!("{renamed} dbname={db} sslmode=verify-ca sslrootcert={ca}")).await.unwrap();
    assert!(j.record(record(3)).await.unwrap());
    assert!(ssl_of(&admin, &db).await.iter().all(|&s| s));

    // Refused before connecting: require (no verification) and verify-full without a CA.
    let e = open(format!("{base} dbname={db} sslmode=require")).await.unwrap_err();
    assert!(e.contains("journal_url: sslmode=require encrypts without verifying"), "{e}");
    let e = open(format!("{base} dbname={db} sslmode=verify-full")).await.unwrap_err();
    assert!(e.contains("needs sslrootcert"), "{e}");
    drop(j);
    drop_database(&admin, &db).await;
}
