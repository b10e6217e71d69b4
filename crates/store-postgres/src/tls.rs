//! TLS to PostgreSQL with rustls, by libpq's `sslmode`. tokio-postgres itself knows only
//! `disable`, `prefer` and `require`, and verifies nothing: what is verified, and against
//! which roots, is the client configuration built here.

use crate::SetupError;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the store uses TLS, as libpq's `sslmode` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, plain TCP when it does not; nothing verified.
    #[default]
    Prefer,
    /// TLS or no connection; encrypted, but the server is not verified.
    Require,
    /// TLS with the server's certificate chain verified against the root certificates.
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host connected to.
    VerifyFull,
}

impl serde::Serialize for SslMode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// By name, so a wrong one is told the five there are.
impl<'de> serde::Deserialize<'de> for SslMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for SslMode {
    type Err = SetupError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(SetupError::InvalidSslMode(other.to_owned())),
        }
    }
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// libpq's rule: `require` with a root certificate given verifies the chain, as `verify-ca`.
    pub(crate) fn with_root_cert(self, root_cert: Option<&Path>) -> Self {
        match (self, root_cert) {
            (Self::Require, Some(_)) => Self::VerifyCa,
            (mode, _) => mode,
        }
    }

    /// What tokio-postgres negotiates: the verifying modes are `require` to it.
    pub(crate) fn negotiation(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Negotiation;
        match self {
            Self::Disable => Negotiation::Disable,
            Self::Prefer => Negotiation::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => Negotiation::Require,
        }
    }
}

/// The connector every pool and upkeep connection uses. Root certificates come from
/// `root_cert` (PEM), else Mozilla's set compiled in; they are read here, once, so a
/// missing file fails start-up rather than every connection.
pub(crate) fn connector(mode: SslMode, root_cert: Option<&Path>) -> Result<MakeRustlsConnect, SetupError> {
    // ring, not aws-lc-rs: the same checks without a C library to build.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(SetupError::Tls)?;
    let config = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            let verifier = RelaxedVerifier { algorithms: provider.signature_verification_algorithms, chain: None };
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
        }
        SslMode::VerifyCa => {
            let algorithms = provider.signature_verification_algorithms;
            let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(root_cert)?), provider)
                .build()
                .map_err(SetupError::Verifier)?;
            let verifier = RelaxedVerifier { algorithms, chain: Some(chain) };
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
        }
        SslMode::VerifyFull => builder.with_root_certificates(roots(root_cert)?),
    };
    Ok(MakeRustlsConnect::new(config.with_no_client_auth()))
}

fn roots(root_cert: Option<&Path>) -> Result<RootCertStore, SetupError> {
    let Some(path) = root_cert else {
        return Ok(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() });
    };
    let unreadable = |source| SetupError::RootCert { path: path.to_owned(), source };
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(path).map_err(unreadable)? {
        roots
            .add(certificate.map_err(unreadable)?)
            .map_err(|source| SetupError::InvalidRootCert { path: path.to_owned(), source })?;
    }
    if roots.is_empty() {
        return Err(SetupError::NoRootCert(path.to_owned()));
    }
    Ok(roots)
}

/// The modes that check less than rustls does by default. `prefer` and `require`
/// (`chain: None`): any certificate is accepted, but the handshake's signatures are still
/// checked, so the session is encrypted to whoever holds the certificate's key.
/// `verify-ca`: the full check, except that the certificate need not name the host.
#[derive(Debug)]
struct RelaxedVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for RelaxedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // The name is checked last, once the chain has verified.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            result => result,
        }
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
    fn modes_parse_by_libpq_names_and_require_with_a_root_verifies_the_chain() {
        for (text, mode) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            assert_eq!(text.parse::<SslMode>().ok(), Some(mode));
            assert_eq!(mode.as_str(), text);
        }
        let error = "allow".parse::<SslMode>().err().map(|error| error.to_string()).unwrap_or_default();
        assert!(error.contains("allow") && error.contains("verify-full"), "{error}");
        let root = Path::new("/etc/ca.pem");
        assert_eq!(SslMode::Require.with_root_cert(Some(root)), SslMode::VerifyCa);
        assert_eq!(SslMode::Require.with_root_cert(None), SslMode::Require);
        assert_eq!(SslMode::Prefer.with_root_cert(Some(root)), SslMode::Prefer);
    }

    #[test]
    fn a_root_certificate_file_that_is_missing_or_empty_fails_at_set_up() {
        let missing = connector(SslMode::VerifyFull, Some(Path::new("/nonexistent/ca.pem"))).err();
        assert!(matches!(missing, Some(SetupError::RootCert { .. })), "{missing:?}");
        let empty = std::env::temp_dir().join(format!("aurore-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").ok();
        let refused = connector(SslMode::VerifyCa, Some(&empty)).err();
        std::fs::remove_file(&empty).ok();
        assert!(matches!(refused, Some(SetupError::NoRootCert(_))), "{refused:?}");
        assert!(connector(SslMode::VerifyFull, None).is_ok(), "Mozilla's roots by default");
    }
}
