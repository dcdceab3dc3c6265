//! TLS settings for registry connections: rustls with the system's roots
//! plus the CA certificates the user configured.
//!
//! Registries on private networks often serve a self-signed certificate,
//! made as `openssl req -x509` makes it: a CA certificate (basic
//! constraints `CA:TRUE`) used directly as the server certificate. The
//! docker daemon accepts such a certificate when it is among the extra
//! CAs, while WebPKI rejects a CA certificate in the end-entity position.
//! [`RegistryVerifier`] therefore accepts a server certificate that is
//! byte for byte one of the configured certificates, as long as it names
//! the host.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Verifies server certificates against the system's roots and the
/// configured CAs, and accepts a configured self-signed certificate
/// presented as it is.
#[derive(Debug)]
pub(crate) struct RegistryVerifier {
    inner: rustls_platform_verifier::Verifier,
    configured: Vec<CertificateDer<'static>>,
}

impl RegistryVerifier {
    /// Builds a verifier that trusts the system's roots and `configured`.
    pub(crate) fn new(
        configured: Vec<CertificateDer<'static>>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<RegistryVerifier, rustls::Error> {
        let inner = rustls_platform_verifier::Verifier::new_with_extra_roots(
            configured.iter().cloned(),
            provider,
        )?;
        Ok(RegistryVerifier { inner, configured })
    }
}

impl ServerCertVerifier for RegistryVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let error = match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(error) => error,
        };
        let configured = self
            .configured
            .iter()
            .any(|certificate| certificate.as_ref() == end_entity.as_ref());
        if !configured {
            return Err(error);
        }
        // NOTE: the validity period of such a certificate is not checked,
        // because the user trusts this exact certificate by configuring it.
        let certificate = webpki::EndEntityCert::try_from(end_entity).map_err(|_| error.clone())?;
        match certificate.verify_is_valid_for_subject_name(server_name) {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(_) => Err(error),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner
            .verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Returns the rustls client configuration for verified connections.
pub(crate) fn client_config(
    configured: Vec<CertificateDer<'static>>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(crypto_provider());
    let verifier = RegistryVerifier::new(configured, provider.clone())?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

/// Returns the crypto provider: ring, which builds with the C compiler
/// alone where aws-lc needs more tools. rustls marks it deprecated for its
/// lack of post-quantum key exchange.
pub(crate) fn crypto_provider() -> rustls::crypto::CryptoProvider {
    #[allow(deprecated)]
    rustls::crypto::ring::default_provider()
}
