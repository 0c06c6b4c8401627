//! TLS policy in one place: PEM certificates and keys are read with `rustls-pki-types`'
//! `PemObject` (errors name the file and what is wrong with it) and turned into rustls configurations that use the `ring` provider — a server config for
//! terminal listeners (optionally verifying client certificates against a CA) and a
//! client config for issuer links (optionally presenting a client certificate).
//! May import: nothing.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("tls client verifier: {0}")]
    Verifier(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_err(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File { file: path.display().to_string(), message: message.into() }
}

/// What is wrong with a PEM file, in words (the parser's own display prints byte arrays).
fn pem_problem(e: &pem::Error, wanted: &str) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            let label = String::from_utf8_lossy(end_marker);
            format!("a PEM section is not closed (no `-----END {}-----` line)", label.trim())
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("malformed PEM `-----BEGIN` line: `{}`", String::from_utf8_lossy(line).trim())
        }
        pem::Error::Base64Decode(why) => format!("a PEM section is not valid base64 ({why})"),
        pem::Error::NoItemsFound => format!("no {wanted} found"),
        other => other.to_string(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))
}

/// Every certificate in a PEM file (other sections, such as a key, are skipped).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    const WANTED: &str = "certificate (`-----BEGIN CERTIFICATE-----`)";
    let data = read(path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&data).collect();
    let certs = certs.map_err(|e| file_err(path, pem_problem(&e, WANTED)))?;
    if certs.is_empty() {
        return Err(file_err(path, format!("no {WANTED} found")));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = read(path)?;
    PrivateKeyDer::from_pem_slice(&data)
        .map_err(|e| file_err(path, pem_problem(&e, "private key (PKCS#8, RSA or EC PEM section)")))
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in load_certs(path)? {
        store.add(c).map_err(|e| file_err(path, e.to_string()))?;
    }
    Ok(store)
}

/// A server configuration for a terminal listener.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, TlsError> {
    let builder =
        rustls::ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Ok(builder.with_single_cert(load_certs(cert)?, load_key(key)?)?)
}

/// A client configuration for an issuer link.
pub fn client_config(ca: &Path, cert_key: Option<(&Path, &Path)>) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?);
    Ok(match cert_key {
        Some((cert, key)) => builder.with_client_auth_cert(load_certs(cert)?, load_key(key)?)?,
        None => builder.with_no_client_auth(),
    })
}

/// A client configuration that verifies the server's chain against `ca` but not the name
/// in its certificate: PostgreSQL's `sslmode=verify-ca`, for a server reached by an
/// address its certificate does not name. Everything else (signatures, validity dates,
/// key usage) is checked as by [`client_config`].
pub fn client_config_chain_only(
    ca: &Path,
    cert_key: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)));
    Ok(match cert_key {
        Some((cert, key)) => builder.with_client_auth_cert(load_certs(cert)?, load_key(key)?)?,
        None => builder.with_no_client_auth(),
    })
}

/// The WebPKI verifier with the name check left out (see [`client_config_chain_only`]).
/// The name is checked last, after the chain, so a name error means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(NotValidForName | NotValidForNameContext { .. })) => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(std::path::PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("isoswitch-tls-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
        fn file(&self, name: &str, text: &str) -> std::path::PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn message(e: TlsError) -> String {
        e.to_string()
    }

    #[test]
    fn certificates_and_keys_load_and_make_configs() {
        let d = Dir::new("good");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        // A bundle with the key in the same file: the certificate is found, the key too.
        let both = d.file("both.pem", &format!("{}{}", cert.pem(), key.serialize_pem()));
        assert_eq!(load_certs(&both).unwrap().len(), 1);
        assert_eq!(load_certs(&both).unwrap()[0].as_ref(), cert.der().as_ref());
        assert!(matches!(load_key(&both).unwrap(), PrivateKeyDer::Pkcs8(_)));
        assert!(server_config(&both, &both, Some(&both)).is_ok());
        assert!(client_config(&both, Some((&both, &both))).is_ok());
    }

    #[test]
    fn bad_files_are_named_with_what_is_wrong() {
        let d = Dir::new("bad");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        let pem = cert.pem();
        let only_key = d.file("key.pem", &key.serialize_pem());
        let only_cert = d.file("cert.pem", &pem);
        let cut = d.file("cut.pem", &pem[..pem.len() - 30]);
        let garbled = d.file("garbled.pem", &pem.replacen("\n", "\n!!!!", 2));
        let empty = d.file("empty.pem", "");
        let missing = d.0.join("missing.pem");
        let cases: Vec<(String, &std::path::Path, &str)> = vec![
            (message(load_certs(&only_key).unwrap_err()), &only_key, "no certificate"),
            (message(load_certs(&empty).unwrap_err()), &empty, "no certificate"),
            (message(load_key(&only_cert).unwrap_err()), &only_cert, "no private key"),
            (message(load_certs(&cut).unwrap_err()), &cut, "-----END CERTIFICATE-----"),
            (message(load_certs(&garbled).unwrap_err()), &garbled, "base64"),
            (message(load_certs(&missing).unwrap_err()), &missing, "cannot read"),
            (message(load_key(&missing).unwrap_err()), &missing, "cannot read"),
            (message(client_config(&only_key, None).unwrap_err()), &only_key, "no certificate"),
        ];
        for (got, file, want) in cases {
            assert!(got.starts_with(&format!("{}: ", file.display())), "{got}");
            assert!(got.contains(want), "{got:?} should say {want:?}");
        }
    }
}
