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
    let verifier = PinnedKey {
        pin: pin.to_owned(),
        provider: Arc::clone(&provider),
    };
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
        })
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth()
}

/// Accepts the server's certificate when its public key has the pinned hash, whoever signed
/// it; the TLS handshake signatures are still checked, so only the key's holder passes.
#[derive(Debug)]
struct PinnedKey {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = spki_pin(end_entity.as_ref()).map_err(rustls::Error::General)?;
        // A pin is a public key's hash, not a secret: a plain comparison leaks nothing.
        if presented == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server presented key {presented}, not the pinned {}; if the server's key was replaced, join again with a new join code",
                self.pin
            )))
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
