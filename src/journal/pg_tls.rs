//! PostgreSQL over TLS the way libpq's connection strings say it: `sslmode=verify-full`
//! (the server's certificate chains to the CA file `sslrootcert` and names the host
//! connected to), `sslmode=verify-ca` (the chain only), and `sslcert` / `sslkey` for a
//! client certificate. tokio-postgres itself knows `disable`, `prefer` and `require` and
//! verifies nothing, so these keys are taken out of the string here, the rest is handed to
//! it, and the TLS is rustls (through `tokio-postgres-rustls`) configured by the switch's
//! TLS policy (`crate::tls`). `sslmode=require` (encrypted, server not verified) is
//! refused: a journal's server is verified or the link is plain. Without `sslmode`, or
//! with `disable`, `allow` or `prefer`, the connection is plain, as it always was.
//! Both forms are read: `host=db sslmode=verify-full sslrootcert=/etc/ca.pem ...` and
//! `postgresql://db/estate?sslmode=verify-full&sslrootcert=/etc/ca.pem`.
//! Errors name the key and never repeat the string (it may hold a password).
//! May import: crate::tls.

use std::path::{Path, PathBuf};

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// A parsed connection string: where to connect, and the TLS to use (`None`: plain).
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("hosts", &self.config.get_hosts())
            .field("tls", &self.is_tls())
            .finish()
    }
}

/// The TLS keys of a connection string, as written.
#[derive(Debug, Default, PartialEq, Eq)]
struct SslKeys {
    mode: Option<String>,
    root_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

impl SslKeys {
    /// Take `key = value` if it is one of ours; `false` leaves it to tokio-postgres.
    fn take(&mut self, key: &str, value: &str) -> bool {
        let slot = match key {
            "sslmode" => &mut self.mode,
            "sslrootcert" => &mut self.root_cert,
            "sslcert" => &mut self.cert,
            "sslkey" => &mut self.key,
            _ => return false,
        };
        *slot = Some(value.to_string());
        true
    }
}

impl PgTarget {
    /// Parse a libpq-style connection string (key/value or URL form).
    pub fn parse(url: &str) -> Result<PgTarget, String> {
        let mut ssl = SslKeys::default();
        let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            strip_url(url, &mut ssl)?
        } else {
            strip_key_values(url, &mut ssl)?
        };
        let mut config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| {
            // "invalid connection string: unknown option `colour`" (the cause names the key).
            match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            }
        })?;
        let tls = tls_config(&ssl)?;
        config.ssl_mode(if tls.is_some() { SslMode::Require } else { SslMode::Disable });
        Ok(PgTarget { config, tls: tls.map(MakeRustlsConnect::new) })
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connect; the connection's task runs on the current runtime and logs, as `what`,
    /// why it ended if it ended in an error.
    pub async fn connect(&self, what: &'static str) -> Result<Client, tokio_postgres::Error> {
        fn watch<F>(conn: F, what: &'static str)
        where
            F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
        {
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::error!(error = %e, "{what}: postgres connection closed");
                }
            });
        }
        match &self.tls {
            None => {
                let (client, conn) = self.config.connect(NoTls).await?;
                watch(conn, what);
                Ok(client)
            }
            Some(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await?;
                watch(conn, what);
                Ok(client)
            }
        }
    }
}

/// The rustls configuration the TLS keys ask for (`None`: plain).
fn tls_config(ssl: &SslKeys) -> Result<Option<rustls::ClientConfig>, String> {
    let full = match ssl.mode.as_deref() {
        None | Some("disable" | "allow" | "prefer") => {
            for (key, set) in [("sslrootcert", &ssl.root_cert), ("sslcert", &ssl.cert), ("sslkey", &ssl.key)]
            {
                if set.is_some() {
                    return Err(format!(
                        "{key} is used with sslmode=verify-full or sslmode=verify-ca only; \
                         without sslmode (or with disable, allow, prefer) the connection is plain"
                    ));
                }
            }
            return Ok(None);
        }
        Some("verify-full") => true,
        Some("verify-ca") => false,
        Some("require") => {
            return Err("sslmode=require encrypts without verifying the server; use \
                        sslmode=verify-full with sslrootcert=<CA file> (or verify-ca)"
                .into());
        }
        Some(other) => {
            return Err(format!(
                "sslmode=`{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    let mode = if full { "verify-full" } else { "verify-ca" };
    let ca = match ssl.root_cert.as_deref() {
        None | Some("") => {
            return Err(format!(
                "sslmode={mode} needs sslrootcert=<file of the CA that signed the server's certificate>"
            ));
        }
        Some("system") => return Err("sslrootcert=system is not supported: name the CA file".into()),
        Some(path) => PathBuf::from(path),
    };
    let cert_key = match (&ssl.cert, &ssl.key) {
        (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
        (None, None) => None,
        (Some(_), None) => return Err("sslcert needs sslkey (the client certificate's private key)".into()),
        (None, Some(_)) => return Err("sslkey needs sslcert (the client certificate)".into()),
    };
    let pair = cert_key.as_ref().map(|(c, k)| (Path::new(c), Path::new(k)));
    let built = if full {
        crate::tls::client_config(&ca, pair)
    } else {
        crate::tls::client_config_chain_only(&ca, pair)
    };
    built.map(Some).map_err(|e| format!("sslmode={mode}: {e}"))
}

/// A key/value string without our keys, every value quoted again for tokio-postgres.
fn strip_key_values(s: &str, ssl: &mut SslKeys) -> Result<String, String> {
    let mut out = Vec::new();
    for (key, value) in key_values(s)? {
        if !ssl.take(&key, &value) {
            out.push(format!("{key}='{}'", value.replace('\\', "\\\\").replace('\'', "\\'")));
        }
    }
    Ok(out.join(" "))
}

/// The `key = value` pairs of a libpq key/value string: a value is single-quoted (with
/// `\'` and `\\`) or runs to the next blank (with `\` escaping the next character).
fn key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(_) = it.peek() else { return Ok(pairs) };
        let mut key = String::new();
        while let Some(c) = it.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.next() != Some('=') {
            return Err(format!("`{key}` is not followed by `=` and a value"));
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if it.next_if_eq(&'\'').is_some() {
            loop {
                match it.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(it.next()),
                    Some(c) => value.push(c),
                    None => return Err(format!("the quoted value of `{key}` is not closed")),
                }
            }
        } else {
            while let Some(c) = it.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(it.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// A URL without our query parameters (their values percent-decoded).
fn strip_url(url: &str, ssl: &mut SslKeys) -> Result<String, String> {
    let Some((base, query)) = url.split_once('?') else { return Ok(url.to_string()) };
    let mut kept = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        let (key, value) = (percent_decode(k)?, percent_decode(v)?);
        if !ssl.take(&key, &value) {
            kept.push(param);
        }
    }
    Ok(if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) })
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = byte else {
                return Err("a `%` in the URL is not followed by two hex digits".into());
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a percent-encoded URL parameter is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> (Result<String, String>, SslKeys) {
        let mut ssl = SslKeys::default();
        let r =
            if s.starts_with("postgres") { strip_url(s, &mut ssl) } else { strip_key_values(s, &mut ssl) };
        (r, ssl)
    }

    fn keys(mode: &str, root: &str) -> SslKeys {
        SslKeys { mode: Some(mode.into()), root_cert: Some(root.into()), ..SslKeys::default() }
    }

    #[test]
    fn tls_keys_come_out_of_either_form_and_the_rest_stays() {
        let cases: &[(&str, &str, SslKeys)] = &[
            (
                "host=db port=5432 sslmode=verify-full sslrootcert=/etc/ca.pem dbname=estate",
                "host='db' port='5432' dbname='estate'",
                keys("verify-full", "/etc/ca.pem"),
            ),
            (
                r"host = db  password='it\'s' sslmode = 'verify-ca' sslrootcert='/my dir/ca.pem'",
                r"host='db' password='it\'s'",
                keys("verify-ca", "/my dir/ca.pem"),
            ),
            (r"password='a\'b\\c' user=x\ y", r"password='a\'b\\c' user='x y'", SslKeys::default()),
            (
                "postgresql://u@db:5432/estate?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=sw",
                "postgresql://u@db:5432/estate?application_name=sw",
                keys("verify-full", "/etc/ca.pem"),
            ),
            (
                "postgres://db/estate?sslmode=verify-full&sslrootcert=/etc/ca.pem",
                "postgres://db/estate",
                keys("verify-full", "/etc/ca.pem"),
            ),
            ("postgres://db/estate", "postgres://db/estate", SslKeys::default()),
        ];
        for (input, rest, ssl) in cases {
            let (got, got_ssl) = split(input);
            assert_eq!(got.as_deref(), Ok(*rest), "{input}");
            assert_eq!(&got_ssl, ssl, "{input}");
        }
        // What is left parses as tokio-postgres reads it (the quoting round-trips).
        let t = PgTarget::parse(r"host=db password='a\'b' user=x\ y").unwrap();
        assert_eq!(t.config.get_password(), Some(&b"a'b"[..]));
        assert_eq!(t.config.get_user(), Some("x y"));
        assert!(!t.is_tls());
        assert_eq!(t.config.get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn bad_strings_and_unsafe_modes_are_refused_naming_the_key() {
        let dir = std::env::temp_dir().join(format!("isoswitch-pgtls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("ca.pem");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let ca = not_pem.display().to_string();
        let cases: Vec<(String, &str)> = vec![
            ("host=db sslmode=require".into(), "sslmode=require encrypts without verifying"),
            ("host=db sslmode=verify-full".into(), "sslmode=verify-full needs sslrootcert"),
            ("host=db sslmode=verify-ca sslrootcert=''".into(), "sslmode=verify-ca needs sslrootcert"),
            ("host=db sslmode=verify-full sslrootcert=system".into(), "sslrootcert=system is not supported"),
            ("host=db sslmode=strict".into(), "sslmode=`strict` is not one of"),
            ("host=db sslrootcert=/etc/ca.pem".into(), "sslrootcert is used with sslmode=verify-full"),
            (format!("host=db sslmode=verify-full sslrootcert={ca} sslcert=c.pem"), "sslcert needs sslkey"),
            (format!("host=db sslmode=verify-full sslrootcert={ca}"), "ca.pem: no certificate"),
            (
                "host=db sslmode=verify-full sslrootcert=/nonexistent/ca.pem".into(),
                "/nonexistent/ca.pem: cannot read",
            ),
            ("host=db password='secret".into(), "quoted value of `password` is not closed"),
            ("host=db dbname".into(), "`dbname` is not followed by `=`"),
            ("postgres://db/x?sslrootcert=%zz".into(), "two hex digits"),
            ("host=db password=hunter2 colour=blue".into(), "colour"),
        ];
        for (input, want) in cases {
            let e = PgTarget::parse(&input).unwrap_err();
            assert!(e.contains(want), "{input}: {e:?} should say {want:?}");
            assert!(!e.contains("hunter2") && !e.contains("secret"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
