//! The wallet config file (`wallet.toml`) and turning it into ready pass makers.
//!
//! Relative paths in the file are read from the file's own folder. With no config file, a demo
//! setup is made: a self-signed chain and key in a `wallet-demo` folder beside the till's store.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::apple::{AppleSettings, PassMaker};
use super::demo::{self, DEMO_GOOGLE_ISSUER_ID, DEMO_PASS_TYPE_IDENTIFIER, DEMO_TEAM_IDENTIFIER};
use super::google::{GoogleSettings, SaveLinkMaker, ServiceAccountKey, slug};
use super::{KeySource, PassError, PassSigner};
use crate::domain::{Program, Timestamp};

/// The environment variable holding a .p12 bundle's password (preferred over the file).
pub const P12_PASSWORD_ENV: &str = "TILLPASS_P12_PASSWORD";

/// `wallet.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletConfig {
    pub apple: Option<AppleConfig>,
    pub google: Option<GoogleConfig>,
}

/// The `[apple]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppleConfig {
    pub pass_type_identifier: String,
    pub team_identifier: String,
    /// PEM or DER certificate, or a .p12/.pfx bundle with certificate and key.
    pub certificate: PathBuf,
    /// PEM private key; not used with a .p12 bundle.
    pub key: Option<PathBuf>,
    pub p12_password: Option<String>,
    /// The Apple WWDR intermediate that issued the certificate.
    pub wwdr: PathBuf,
    pub images: Option<PathBuf>,
    pub web_service_url: Option<String>,
    pub nfc_encryption_public_key: Option<String>,
    /// The server's APNs endpoint (default: Apple's production service).
    pub apns_url: Option<String>,
    /// Extra roots (PEM) the server trusts for APNs, e.g. a relay's CA.
    pub apns_ca: Option<PathBuf>,
}

/// The `[google]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleConfig {
    pub issuer_id: String,
    pub service_account_key: PathBuf,
    pub logo_uri: String,
    pub class_prefix: Option<String>,
    #[serde(default)]
    pub origins: Vec<String>,
    #[serde(default)]
    pub smart_tap_issuers: Vec<String>,
    /// The server's Wallet Objects API base (default: Google's), for a relay or a test.
    pub api_url: Option<String>,
    /// The OAuth token endpoint (default: the key file's `token_uri`).
    pub token_url: Option<String>,
}

/// Ready-to-use pass makers.
#[derive(Debug)]
pub struct WalletSetup {
    pub apple: Option<PassMaker>,
    pub google: Option<SaveLinkMaker>,
    /// Made from the demo chain: passes are labelled and will not install.
    pub demo: bool,
}

impl WalletConfig {
    /// Reads `wallet.toml`; errors name the file and the field.
    pub fn read(path: &Path) -> Result<Self, PassError> {
        let text = std::fs::read_to_string(path).map_err(|e| PassError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let de = toml::Deserializer::parse(&text).map_err(|e| PassError::Config {
            path: path.display().to_string(),
            field: "(file)".into(),
            reason: e.to_string(),
        })?;
        let mut config: WalletConfig =
            serde_path_to_error::deserialize(de).map_err(|e| PassError::Config {
                path: path.display().to_string(),
                field: e.path().to_string(),
                reason: e.inner().message().to_owned(),
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve(base);
        Ok(config)
    }

    fn resolve(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(a) = &mut self.apple {
            join(&mut a.certificate);
            join(&mut a.wwdr);
            a.key.iter_mut().for_each(join);
            a.images.iter_mut().for_each(join);
            a.apns_ca.iter_mut().for_each(join);
        }
        if let Some(g) = &mut self.google {
            join(&mut g.service_account_key);
        }
    }
}

fn config_err(path: &Path, field: &str, reason: &str) -> PassError {
    PassError::Config {
        path: path.display().to_string(),
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

impl AppleConfig {
    fn key_source(&self, config_path: &Path) -> Result<KeySource, PassError> {
        let ext = self
            .certificate
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if matches!(ext.as_deref(), Some("p12" | "pfx")) {
            let password = std::env::var(P12_PASSWORD_ENV)
                .ok()
                .or_else(|| self.p12_password.clone())
                .unwrap_or_default();
            return Ok(KeySource::P12 {
                bundle: self.certificate.clone(),
                password,
            });
        }
        let key = self.key.clone().ok_or_else(|| {
            config_err(
                config_path,
                "apple.key",
                "is required unless certificate is a .p12 bundle",
            )
        })?;
        Ok(KeySource::Pem {
            certificate: self.certificate.clone(),
            key,
        })
    }

    fn settings(&self, config_path: &Path, demo: bool) -> Result<AppleSettings, PassError> {
        if let Some(url) = &self.web_service_url {
            let local = url.starts_with("http://127.0.0.1") || url.starts_with("http://localhost");
            if !url.starts_with("https://") && !local {
                return Err(config_err(
                    config_path,
                    "apple.web_service_url",
                    "must be an https:// address (Wallet refuses plain http)",
                ));
            }
        }
        if let Some(key) = &self.nfc_encryption_public_key {
            check_nfc_key(key).map_err(|reason| {
                config_err(config_path, "apple.nfc_encryption_public_key", &reason)
            })?;
        }
        Ok(AppleSettings {
            pass_type_identifier: self.pass_type_identifier.clone(),
            team_identifier: self.team_identifier.clone(),
            web_service_url: self.web_service_url.clone(),
            nfc_encryption_public_key: self.nfc_encryption_public_key.clone(),
            images: self.images.clone(),
            demo,
        })
    }

    fn maker(
        &self,
        config_path: &Path,
        demo: bool,
        now: Timestamp,
    ) -> Result<PassMaker, PassError> {
        let settings = self.settings(config_path, demo)?;
        let signer = PassSigner::load(
            &self.key_source(config_path)?,
            &self.wwdr,
            &self.pass_type_identifier,
            &self.team_identifier,
            now,
        )?;
        PassMaker::new(settings, signer)
    }
}

/// Wallet's NFC key: base64 of an X.509 SubjectPublicKeyInfo holding an EC (P-256) key.
fn check_nfc_key(key: &str) -> Result<(), String> {
    use der::Decode as _;
    const EC_PUBLIC_KEY: der::oid::ObjectIdentifier =
        der::oid::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
    let der = data_encoding::BASE64
        .decode(key.trim().as_bytes())
        .map_err(|e| format!("not base64: {e}"))?;
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(&der)
        .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
    if spki.algorithm.oid != EC_PUBLIC_KEY {
        return Err("must be an EC (P-256) public key".into());
    }
    Ok(())
}

impl GoogleConfig {
    fn maker(&self, program: &Program, demo: bool) -> Result<SaveLinkMaker, PassError> {
        let key = ServiceAccountKey::read(&self.service_account_key)?;
        let settings = GoogleSettings {
            issuer_id: self.issuer_id.clone(),
            class_prefix: self
                .class_prefix
                .clone()
                .unwrap_or_else(|| slug(&program.name)),
            logo_uri: self.logo_uri.clone(),
            origins: self.origins.clone(),
            smart_tap_issuers: self.smart_tap_issuers.clone(),
            demo,
        };
        SaveLinkMaker::new(settings, &key, &self.service_account_key)
    }
}

impl WalletSetup {
    /// Loads `config` if given (it must exist), else the demo setup in `demo_dir`, made on first
    /// use and remade when its certificates have expired.
    pub fn load(
        config: Option<&Path>,
        demo_dir: &Path,
        program: &Program,
        now: Timestamp,
    ) -> Result<Self, PassError> {
        match config {
            Some(path) => {
                let wallet = WalletConfig::read(path)?;
                Ok(WalletSetup {
                    apple: wallet
                        .apple
                        .as_ref()
                        .map(|a| a.maker(path, false, now))
                        .transpose()?,
                    google: wallet
                        .google
                        .as_ref()
                        .map(|g| g.maker(program, false))
                        .transpose()?,
                    demo: false,
                })
            }
            None => Self::demo(demo_dir, program, now),
        }
    }

    fn demo(dir: &Path, program: &Program, now: Timestamp) -> Result<Self, PassError> {
        let make = |fresh: bool| -> Result<Self, PassError> {
            let files = demo::ensure(dir, now, fresh)?;
            let config_path = dir.join("(demo)");
            let apple = AppleConfig {
                pass_type_identifier: DEMO_PASS_TYPE_IDENTIFIER.into(),
                team_identifier: DEMO_TEAM_IDENTIFIER.into(),
                certificate: files.certificate,
                key: Some(files.key),
                p12_password: None,
                wwdr: files.wwdr,
                images: None,
                web_service_url: None,
                nfc_encryption_public_key: None,
                apns_url: None,
                apns_ca: None,
            };
            let google = GoogleConfig {
                issuer_id: DEMO_GOOGLE_ISSUER_ID.into(),
                service_account_key: files.google_key,
                logo_uri: "https://example.com/tillpass-demo-logo.png".into(),
                class_prefix: None,
                origins: Vec::new(),
                smart_tap_issuers: Vec::new(),
                api_url: None,
                token_url: None,
            };
            Ok(WalletSetup {
                apple: Some(apple.maker(&config_path, true, now)?),
                google: Some(google.maker(program, true)?),
                demo: true,
            })
        };
        // Demo material that has expired (or was damaged) is simply made again.
        make(true).or_else(|_| make(false))
    }
}
