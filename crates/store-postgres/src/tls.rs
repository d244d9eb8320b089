//! TLS to PostgreSQL, as the URL's `sslmode` and `sslrootcert` say, with libpq's names and
//! meanings (rustls, no OpenSSL):
//!
//! | `sslmode` | encrypted | the server's certificate |
//! |---|---|---|
//! | `disable` | never | – |
//! | `prefer` (default) | when the server offers TLS | not checked |
//! | `require` | always, or no connection | not checked; with `sslrootcert`, as `verify-ca` |
//! | `verify-ca` | always | signed by a root of `sslrootcert` |
//! | `verify-full` | always | as `verify-ca`, and made out to the host connected to |
//!
//! `verify-ca` and `verify-full` need `sslrootcert`: a CA file, or `system` for the public
//! web's roots (as libpq 16's `sslrootcert=system`).
//!
//! tokio-postgres itself refuses `verify-ca`, `verify-full` and `sslrootcert`: they are taken
//! out of the URL here, before it parses the rest, and applied to the TLS connector.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::OpenError;

/// libpq's `sslmode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other}: one of disable, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }
}

/// A connection URL's PostgreSQL settings and its TLS connector.
pub(crate) fn connection(
    url: &str,
) -> Result<(tokio_postgres::Config, MakeRustlsConnect), OpenError> {
    let (rest, mode, root) = take_tls_params(url).map_err(OpenError::Tls)?;
    let mut config = tokio_postgres::Config::from_str(&rest).map_err(OpenError::Url)?;
    // Whatever spelling reached tokio-postgres with an sslmode of its own is a second
    // sslmode: refused rather than one silently winning.
    if config.get_ssl_mode() != WireMode::Prefer {
        return Err(OpenError::Tls(
            "sslmode is given twice (or in a form this reader does not take apart): give it once, as ?sslmode=…".into(),
        ));
    }
    if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root.is_none() {
        return Err(OpenError::Tls(
            "sslmode=verify-ca and verify-full need sslrootcert: the CA's file, or `system` for the public roots".into(),
        ));
    }
    config.ssl_mode(match mode {
        SslMode::Disable => WireMode::Disable,
        SslMode::Prefer => WireMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireMode::Require,
    });
    let verify = match (mode, &root) {
        (SslMode::VerifyFull, _) => Verify::Full,
        (SslMode::VerifyCa, _) | (SslMode::Require, Some(_)) => Verify::Chain,
        _ => Verify::Nothing,
    };
    let tls = connector(verify, root.as_deref()).map_err(OpenError::Tls)?;
    Ok((config, MakeRustlsConnect::new(tls)))
}

/// `url` without `sslmode` and `sslrootcert`, and their values (`prefer` by default). Both
/// forms libpq takes: a `postgres://…?sslmode=…` URL, or `key=value` words.
fn take_tls_params(url: &str) -> Result<(String, SslMode, Option<PathBuf>), String> {
    let (mut mode, mut root) = (SslMode::Prefer, None);
    let mut given = false;
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            // Twice would let the last silently weaken the first.
            "sslmode" if given => return Err("sslmode is given twice: give it once".into()),
            "sslmode" => (mode, given) = (value.parse()?, true),
            "sslrootcert" => root = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // The query starts after the authority: a password may hold a `?`.
        let after_authority = url.rfind('@').map_or(0, |at| at + 1);
        let Some(start) = url[after_authority..].find('?').map(|i| after_authority + i) else {
            return Ok((url.into(), mode, root));
        };
        let (base, query) = (&url[..start], &url[start + 1..]);
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(&percent_decode(key), &percent_decode(value))? {
                kept.push(pair);
            }
        }
        let rest =
            if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        return Ok((rest, mode, root));
    }
    let mut kept = Vec::new();
    for word in url.split_whitespace() {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        if !take(key, value)? {
            kept.push(word);
        }
    }
    Ok((kept.join(" "), mode, root))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verify {
    /// Encrypted, but whoever answers is taken (libpq's `prefer` and `require`).
    Nothing,
    /// Signed by a trusted root, whatever host it names.
    Chain,
    /// Signed by a trusted root and made out to the host.
    Full,
}

fn connector(
    verify: Verify,
    root: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let mut roots = RootCertStore::empty();
    match root {
        Some(file) if file.as_os_str() == "system" => {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned())
        }
        Some(file) => {
            let certs = CertificateDer::pem_file_iter(file)
                .map_err(|e| format!("sslrootcert={}: {e}", file.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("sslrootcert={}: {e}", file.display()))?;
                roots.add(cert).map_err(|e| format!("sslrootcert={}: {e}", file.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let algorithms = provider.signature_verification_algorithms;
    let config = match verify {
        Verify::Full => builder.with_root_certificates(roots).with_no_client_auth(),
        Verify::Chain => {
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("TLS: {e}"))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
                .with_no_client_auth()
        }
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked { algorithms }))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// `verify-ca`: the chain is checked, the host name is not.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a root: encrypted against a passive listener, not
/// against whoever answers in the server's place (libpq's meaning; use `verify-full`).
#[derive(Debug)]
struct Unchecked {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_both_url_forms() {
        let (rest, mode, root) = take_tls_params(
            "postgres://u@db.example:5432/x?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=a",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u@db.example:5432/x?application_name=a");
        assert_eq!(mode, SslMode::VerifyFull);
        assert_eq!(root.unwrap(), PathBuf::from("/etc/ca.pem"));
        let (rest, mode, _) = take_tls_params("host=db user=u sslmode=require").unwrap();
        assert_eq!((rest.as_str(), mode), ("host=db user=u", SslMode::Require));
        let (_, mode, _) = take_tls_params("postgres://u@db/x").unwrap();
        assert_eq!(mode, SslMode::Prefer);
        let refused = take_tls_params("postgres://u@db/x?sslmode=maybe").unwrap_err();
        assert!(refused.contains("sslmode=maybe"), "{refused}");
        // A `?` in the password, and an encoded key, are no way around it.
        let (rest, mode, _) = take_tls_params("postgres://u:p?w@db/x?ssl%6Dode=require").unwrap();
        assert_eq!((rest.as_str(), mode), ("postgres://u:p?w@db/x", SslMode::Require));
    }

    #[test]
    fn verifying_modes_need_a_root_and_sslmode_is_given_once() {
        let refused = |url: &str| connection(url).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused("postgres://u@db/x?sslmode=verify-full").contains("need sslrootcert"));
        assert!(refused("postgres://u@db/x?sslmode=verify-ca").contains("need sslrootcert"));
        assert!(connection("postgres://u@db/x?sslmode=verify-full&sslrootcert=system").is_ok());
        assert!(refused("host=db user=u sslmode=require sslmode=disable").contains("twice"));
        assert!(refused("postgres://u@db/x?sslmode=require&%73slmode=disable").contains("twice"));
    }
}
