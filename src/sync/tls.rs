//! How a till trusts its server: the SHA-256 of the server certificate's public key, pinned
//! when the till joined (from the join code), or the operating system's certificate
//! authorities for a CA-issued certificate. Plain HTTP only to this machine, unless the till
//! was told otherwise.

use std::sync::Arc;

use der::{Decode as _, Encode as _};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest as _, Sha256};

/// The prefix of a public-key pin.
const PIN_PREFIX: &str = "sha256/";

/// The pin of a certificate (DER): `sha256/` and the base64 SHA-256 of its SubjectPublicKeyInfo.
/// The key, not the certificate: a renewed certificate for the same key keeps its pin.
pub fn spki_pin(cert_der: &[u8]) -> Result<String, String> {
    let cert = x509_cert::Certificate::from_der(cert_der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| format!("certificate public key: {e}"))?;
    Ok(key_pin(&spki))
}

/// The pin of a public key given as its SubjectPublicKeyInfo (DER).
pub fn key_pin(spki_der: &[u8]) -> String {
    format!(
        "{PIN_PREFIX}{}",
        data_encoding::BASE64.encode(&Sha256::digest(spki_der))
    )
}

/// Whether `pin` is shaped like a pin this module makes.
pub fn is_pin(pin: &str) -> bool {
    pin.strip_prefix(PIN_PREFIX)
        .and_then(|b| data_encoding::BASE64.decode(b.as_bytes()).ok())
        .is_some_and(|d| d.len() == 32)
}

/// Whether `url` is plain HTTP to another machine (refused unless the till was told to allow it).
pub fn is_plain_http_to_another_host(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    !(host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()))
}

/// A rustls client configuration that trusts exactly the server key `pin`.
pub fn pinned_config(pin: &str) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Verifier::new(Policy::Pin(pin.to_owned()), Arc::clone(&provider));
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring supports the default TLS versions"))
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth()
}

/// What a [`Verifier`] accepts of a server's certificate.
#[derive(Debug)]
pub enum Policy {
    /// A certificate whose public key has this pin, whoever signed it.
    Pin(String),
    /// Any certificate (encrypted, not authenticated: PostgreSQL's `sslmode=require`).
    AnyCertificate,
    /// A certificate that chains to the roots, for any host name (`verify-ca`).
    ChainOnly(Arc<rustls::client::WebPkiServerVerifier>),
}

/// The one custom certificate check of this crate. Whatever the policy, the TLS handshake's
/// signatures are checked against the certificate presented, so only the key's holder passes.
#[derive(Debug)]
pub struct Verifier {
    policy: Policy,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    /// A verifier for `policy`, checking handshake signatures with `provider`'s algorithms.
    pub fn new(policy: Policy, provider: Arc<CryptoProvider>) -> Self {
        Self { policy, provider }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.policy {
            Policy::Pin(pin) => {
                let presented = spki_pin(end_entity.as_ref()).map_err(rustls::Error::General)?;
                // A pin is a public key's hash, not a secret: a plain comparison leaks nothing.
                if presented == *pin {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(format!(
                        "the server presented key {presented}, not the pinned {pin}; if the server's key was replaced, join again with a new join code"
                    )))
                }
            }
            Policy::AnyCertificate => Ok(ServerCertVerified::assertion()),
            Policy::ChainOnly(webpki) => match webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            },
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_this_machine_only() {
        for local in [
            "http://127.0.0.1:8443",
            "http://localhost:8443/x",
            "http://[::1]:80",
            "https://shop.example.com",
        ] {
            assert!(!is_plain_http_to_another_host(local), "{local}");
        }
        for remote in [
            "http://192.168.1.10:8443",
            "http://server",
            "http://[2001:db8::1]:80",
        ] {
            assert!(is_plain_http_to_another_host(remote), "{remote}");
        }
    }

    #[test]
    fn a_pin_is_the_hash_of_the_public_key() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["till.example".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let pin = spki_pin(cert.der()).expect("pin");
        assert!(is_pin(&pin), "{pin}");
        let expected = format!(
            "sha256/{}",
            data_encoding::BASE64.encode(&Sha256::digest(
                rcgen::PublicKeyData::subject_public_key_info(&key)
            ))
        );
        assert_eq!(pin, expected);
        assert!(!is_pin("sha256/abc"));
    }
}
