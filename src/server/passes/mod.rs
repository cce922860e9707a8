//! Wallet passes issued by the server and kept live: the per-member link a till shows as a QR
//! code, Apple's PassKit web service (`/passkit/v1/...`), and the updater that notices changed
//! passes after pushes and queues their APNs and Google updates (see [`updates`]).
//!
//! The wallet keys live only here; tills ask for a link (`POST /v1/passes/link`).

pub mod apns;
mod content;
mod db;
pub mod google;
pub mod records;
mod routes;
pub mod updates;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::pass::WalletSetup;
pub use content::shown;
pub use routes::routes;

/// Where link URLs and `webServiceURL` point, and where pushes go.
#[derive(Debug, Clone)]
pub struct PassSettings {
    /// The server's public HTTPS address, e.g. `https://loyalty.example.com`.
    pub public_url: String,
    /// APNs: where to send (production by default), and extra trusted roots (a relay, tests).
    pub apns: Option<apns::ApnsSettings>,
    /// Google's Wallet Objects API with the service account's key: objects are inserted and
    /// patched there (without it, save links carry the whole object and it never changes).
    pub google: Option<(
        crate::pass::google::ServiceAccountKey,
        google::GoogleEndpoints,
    )>,
}

/// The wallet makers and the update machinery, shared by every request.
pub struct PassService {
    pub setup: WalletSetup,
    pub settings: PassSettings,
    apns: Option<apns::Apns>,
    google: Option<google::GoogleWalletApi>,
    /// The tier classes (as JSON) already brought up to date at Google by this process.
    classes: tokio::sync::Mutex<std::collections::HashSet<String>>,
    /// The program, parsed once per version.
    pub(crate) programs: content::Programs,
    /// Woken when the updater queued pushes: the sender looks for due ones.
    pub(crate) queued: Notify,
}

/// An HTTPS client trusting the system's roots, with ring as its crypto (set here, not as a
/// process-wide default).
fn https_client() -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())
}

/// Why the pass service could not start.
#[derive(Debug, thiserror::Error)]
pub enum PassServiceError {
    #[error("the public URL {0:?} must start with https://")]
    PublicUrl(String),
    #[error(transparent)]
    Apns(#[from] apns::ApnsError),
    #[error(transparent)]
    Google(#[from] google::GoogleApiError),
}

impl PassService {
    /// The service for `setup`: the Apple pass's `webServiceURL` becomes `PUBLIC/passkit`.
    pub fn new(
        mut setup: WalletSetup,
        settings: PassSettings,
    ) -> Result<Arc<Self>, PassServiceError> {
        let public = settings.public_url.trim_end_matches('/').to_owned();
        if !public.starts_with("https://") {
            return Err(PassServiceError::PublicUrl(public));
        }
        let apns = match (&setup.apple, &settings.apns) {
            (Some(maker), Some(apns)) => Some(apns::Apns::new(
                maker.signer(),
                &maker.settings.pass_type_identifier,
                apns,
            )?),
            _ => None,
        };
        let google = match (&setup.google, &settings.google) {
            (Some(_), Some((key, endpoints))) => Some(google::GoogleWalletApi::new(
                key.clone(),
                endpoints.clone(),
                https_client().map_err(google::GoogleApiError::Setup)?,
            )?),
            _ => None,
        };
        if let Some(maker) = &mut setup.apple {
            maker.settings.web_service_url = Some(format!("{public}/passkit"));
        }
        Ok(Arc::new(PassService {
            setup,
            settings: PassSettings {
                public_url: public,
                ..settings
            },
            apns,
            google,
            classes: tokio::sync::Mutex::new(std::collections::HashSet::new()),
            programs: content::Programs::default(),
            queued: Notify::new(),
        }))
    }

    /// The Apple pass type identifier, when Apple passes are on.
    pub fn pass_type(&self) -> Option<&str> {
        self.setup
            .apple
            .as_ref()
            .map(|m| m.settings.pass_type_identifier.as_str())
    }

    /// Brings the pass's Google object (and its tier classes, once per process) up to date at
    /// Google; `Ok(false)` when this server does not talk to Google's API.
    pub async fn update_google(
        &self,
        pass: &crate::pass::PassContent,
    ) -> Result<bool, google::GoogleApiError> {
        let (Some(api), Some(maker)) = (&self.google, &self.setup.google) else {
            return Ok(false);
        };
        let program = &pass.program;
        let mut classes = self.classes.lock().await;
        for tier in 0..program.tiers.len() {
            let class = maker.settings.loyalty_class(program, tier);
            let seen = serde_json::to_string(&class)
                .map_err(|e| google::GoogleApiError::Setup(e.to_string()))?;
            if !classes.contains(&seen) {
                api.upsert_class(&class).await?;
                classes.insert(seen);
            }
        }
        drop(classes);
        // An object inserted before is patched in one call; a new one is inserted.
        let object = maker.settings.loyalty_object(&pass.pass());
        let body = serde_json::to_value(&object)
            .map_err(|e| google::GoogleApiError::Setup(e.to_string()))?;
        match api.patch_object(&object.id, &body).await {
            Err(e) if e.status() == Some(404) => {
                api.upsert_object(&object).await?;
            }
            done => done?,
        }
        Ok(true)
    }
}
