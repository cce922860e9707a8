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
}

/// The wallet makers and the update machinery, shared by every request.
pub struct PassService {
    pub setup: WalletSetup,
    pub settings: PassSettings,
    apns: Option<apns::Apns>,
    /// Woken after every stored push: the updater looks for changed passes.
    pub(crate) changed: Notify,
    /// Woken when the updater queued pushes: the sender looks for due ones.
    pub(crate) queued: Notify,
}

/// Why the pass service could not start.
#[derive(Debug, thiserror::Error)]
pub enum PassServiceError {
    #[error("the public URL {0:?} must start with https://")]
    PublicUrl(String),
    #[error(transparent)]
    Apns(#[from] apns::ApnsError),
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
            changed: Notify::new(),
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

    /// Tells the updater that the ledger or member records changed.
    pub fn notify_changed(&self) {
        self.changed.notify_one();
    }
}
