//! TLS policy in one place: PEM certificates and keys are loaded with rustls-pemfile and
//! turned into rustls configurations that use the `ring` provider — a server config for
//! terminal listeners (optionally verifying client certificates against a CA) and a
//! client config for issuer links (optionally presenting a client certificate).
//! May import: anything (edge module).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
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

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = std::fs::read(path).map_err(|e| file_err(path, e.to_string()))?;
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut data.as_slice()).collect();
    let certs = certs.map_err(|e| file_err(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err(path, "no certificate found"));
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = std::fs::read(path).map_err(|e| file_err(path, e.to_string()))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| file_err(path, e.to_string()))?
        .ok_or_else(|| file_err(path, "no private key found"))
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
