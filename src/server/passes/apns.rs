//! Apple Push Notification service for pass updates: HTTP/2 over TLS with the Pass Type ID
//! certificate as the client identity, `apns-topic` = the pass type identifier, an empty `{}`
//! payload. The device then asks the web service which of its passes changed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};

use crate::pass::PassSigner;
use crate::pass::signer::KeyDer;

/// Apple's production push service.
pub const PRODUCTION: &str = "https://api.push.apple.com";

/// Where pushes go.
#[derive(Debug, Clone)]
pub struct ApnsSettings {
    /// Base URL, [`PRODUCTION`] unless a relay or a test stands in.
    pub endpoint: String,
    /// A PEM file of extra roots to trust besides the system's (a relay's or a test's CA).
    pub extra_roots: Option<PathBuf>,
}

impl Default for ApnsSettings {
    fn default() -> Self {
        Self {
            endpoint: PRODUCTION.to_owned(),
            extra_roots: None,
        }
    }
}

/// Why the APNs client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ApnsError {
    #[error("APNs endpoint {0:?} must start with https://")]
    Endpoint(String),
    #[error("APNs trusted roots {path}: {reason}")]
    Roots { path: String, reason: String },
    #[error("APNs client identity: {0}")]
    Identity(String),
}

/// What came of one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Apple took it.
    Delivered,
    /// The device token is no longer valid (410, or 400 BadDeviceToken): forget the device.
    Gone,
    /// Try again later (429, 5xx, a network fault, or a certificate Apple refused for now).
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Refused for good (a request no retry can mend): logged and dropped.
    Dropped(String),
}

/// A client for one pass type.
pub struct Apns {
    http: reqwest::Client,
    endpoint: String,
    topic: String,
}

impl Apns {
    /// The client presenting `signer`'s certificate (with its WWDR intermediate) for `topic`.
    pub fn new(
        signer: &PassSigner,
        topic: &str,
        settings: &ApnsSettings,
    ) -> Result<Self, ApnsError> {
        let endpoint = settings.endpoint.trim_end_matches('/').to_owned();
        if !endpoint.starts_with("https://") {
            return Err(ApnsError::Endpoint(endpoint));
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = &settings.extra_roots {
            let roots_err = |reason: String| ApnsError::Roots {
                path: path.display().to_string(),
                reason,
            };
            let mut added = 0;
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| roots_err(e.to_string()))? {
                roots
                    .add(cert.map_err(|e| roots_err(e.to_string()))?)
                    .map_err(|e| roots_err(e.to_string()))?;
                added += 1;
            }
            if added == 0 {
                return Err(roots_err("holds no PEM certificate".into()));
            }
        }
        let key = match signer.key_der() {
            KeyDer::Pkcs8(der) => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.clone())),
            KeyDer::Pkcs1(der) => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der.clone())),
        };
        let chain = vec![
            CertificateDer::from(signer.certificate_der().to_vec()),
            CertificateDer::from(signer.wwdr_der().to_vec()),
        ];
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ApnsError::Identity(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| ApnsError::Identity(e.to_string()))?;
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .http2_prior_knowledge()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ApnsError::Identity(e.to_string()))?;
        Ok(Self {
            http,
            endpoint,
            topic: topic.to_owned(),
        })
    }

    /// Tells the device behind `push_token` that a pass of `topic` changed.
    pub async fn push(&self, push_token: &str) -> Outcome {
        let token_ok = !push_token.is_empty()
            && push_token.len() <= 200
            && push_token.bytes().all(|b| b.is_ascii_hexdigit());
        if !token_ok {
            return Outcome::Gone;
        }
        let sent = self
            .http
            .post(format!("{}/3/device/{push_token}", self.endpoint))
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "background")
            .header("apns-priority", "5")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body("{}")
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    reason: format!("APNs unreachable: {e}"),
                };
            }
        };
        let status = response.status().as_u16();
        let after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let reason = response
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_owned))
            .unwrap_or_default();
        match status {
            200 => Outcome::Delivered,
            410 => Outcome::Gone,
            400 if reason == "BadDeviceToken" || reason == "DeviceTokenNotForTopic" => {
                Outcome::Gone
            }
            _ => Outcome::Retry {
                after,
                reason: format!("APNs answered {status} {reason}"),
            },
        }
    }
}
