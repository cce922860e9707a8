//! A throwaway signing chain (root -> "WWDR" intermediate -> Pass Type ID certificate) and a
//! Google-style service-account key, so passes can be made with no Apple or Google account.
//! Passes signed this way are real, verifiable files, but no phone will install them.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_RSA_SHA256,
};
use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};

use super::PassError;
use crate::domain::Timestamp;

/// The pass type identifier of demo passes.
pub const DEMO_PASS_TYPE_IDENTIFIER: &str = "pass.dev.tillpass.demo";
/// The team identifier of demo passes.
pub const DEMO_TEAM_IDENTIFIER: &str = "DEMO000000";
/// The issuer id on demo Google links (Google will refuse them).
pub const DEMO_GOOGLE_ISSUER_ID: &str = "3388000000000000000";

const UID: [u64; 7] = [0, 9, 2342, 19_200_300, 100, 1, 1];

/// What to put in a generated chain.
#[derive(Debug, Clone)]
pub struct ChainSpec {
    pub pass_type_identifier: String,
    pub team_identifier: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

impl ChainSpec {
    /// The demo identifiers, valid from a day before `now` for a year.
    pub fn demo(now: Timestamp) -> Self {
        ChainSpec {
            pass_type_identifier: DEMO_PASS_TYPE_IDENTIFIER.into(),
            team_identifier: DEMO_TEAM_IDENTIFIER.into(),
            not_before: now.plus_days(-1),
            not_after: now.plus_days(365),
        }
    }
}

/// A generated chain, PEM encoded.
#[derive(Debug, Clone)]
pub struct Chain {
    pub root_pem: String,
    pub wwdr_pem: String,
    pub pass_pem: String,
    /// Unencrypted PKCS#8.
    pub pass_key_pem: String,
}

/// A new RSA-2048 key: `(PKCS#8 PEM, public key PEM)`.
pub fn rsa_key() -> Result<(String, String), PassError> {
    let key = rsa::PrivateKey::new(&mut rand::rng(), 2048)
        .map_err(|e| PassError::Sign(format!("key generation: {e}")))?;
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| PassError::Sign(e.to_string()))?
        .to_string();
    let public = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| PassError::Sign(e.to_string()))?;
    Ok((private, public))
}

fn rcgen_err(e: rcgen::Error) -> PassError {
    PassError::Sign(format!("certificate generation: {e}"))
}

fn key_pair(pem: &str) -> Result<KeyPair, PassError> {
    KeyPair::from_pem_and_sign_algo(pem, &PKCS_RSA_SHA256).map_err(rcgen_err)
}

fn offset(t: Timestamp) -> Result<time::OffsetDateTime, PassError> {
    time::OffsetDateTime::from_unix_timestamp(t.millis() / 1000)
        .map_err(|e| PassError::Sign(e.to_string()))
}

fn params(
    spec: &ChainSpec,
    names: &[(DnType, &str)],
    ca: bool,
) -> Result<CertificateParams, PassError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err)?;
    for (kind, value) in names {
        p.distinguished_name.push(kind.clone(), *value);
    }
    p.not_before = offset(spec.not_before)?;
    p.not_after = offset(spec.not_after)?;
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    } else {
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    }
    Ok(p)
}

/// Generates root, intermediate and pass certificate (three fresh RSA-2048 keys).
pub fn issue_chain(spec: &ChainSpec) -> Result<Chain, PassError> {
    let (root_key_pem, _) = rsa_key()?;
    let (wwdr_key_pem, _) = rsa_key()?;
    let (pass_key_pem, _) = rsa_key()?;
    let (root_key, wwdr_key, pass_key) = (
        key_pair(&root_key_pem)?,
        key_pair(&wwdr_key_pem)?,
        key_pair(&pass_key_pem)?,
    );
    let root_params = params(
        spec,
        &[
            (DnType::CommonName, "Tillpass Demo Root CA (not Apple)"),
            (DnType::OrganizationName, "Tillpass demo"),
        ],
        true,
    )?;
    let root = root_params.self_signed(&root_key).map_err(rcgen_err)?;
    let root_issuer = Issuer::new(root_params, root_key);
    let wwdr_params = params(
        spec,
        &[
            (
                DnType::CommonName,
                "Tillpass Demo Worldwide Developer Relations CA (not Apple)",
            ),
            (DnType::OrganizationalUnitName, "G4"),
            (DnType::OrganizationName, "Tillpass demo"),
        ],
        true,
    )?;
    let wwdr = wwdr_params
        .signed_by(&wwdr_key, &root_issuer)
        .map_err(rcgen_err)?;
    let wwdr_issuer = Issuer::new(wwdr_params, wwdr_key);
    let cn = format!("Pass Type ID: {}", spec.pass_type_identifier);
    let pass = params(
        spec,
        &[
            (
                DnType::CustomDnType(UID.to_vec()),
                &spec.pass_type_identifier,
            ),
            (DnType::CommonName, &cn),
            (DnType::OrganizationalUnitName, &spec.team_identifier),
            (DnType::OrganizationName, "Tillpass demo"),
        ],
        false,
    )?
    .signed_by(&pass_key, &wwdr_issuer)
    .map_err(rcgen_err)?;
    Ok(Chain {
        root_pem: root.pem(),
        wwdr_pem: wwdr.pem(),
        pass_pem: pass.pem(),
        pass_key_pem,
    })
}

/// A service-account key file in the shape Google issues, for a throwaway key.
pub fn service_account_json(client_email: &str, private_key_pem: &str) -> String {
    let key_id = data_encoding::HEXLOWER.encode(&rand::random::<[u8; 20]>());
    serde_json::json!({
        "type": "service_account",
        "project_id": "tillpass-demo",
        "private_key_id": key_id,
        "private_key": private_key_pem,
        "client_email": client_email,
        "client_id": "0",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string()
}

/// The files of a demo wallet folder.
#[derive(Debug, Clone)]
pub struct DemoFiles {
    pub root: PathBuf,
    pub wwdr: PathBuf,
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub google_key: PathBuf,
}

impl DemoFiles {
    /// The file names inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        DemoFiles {
            root: dir.join("demo-root.pem"),
            wwdr: dir.join("demo-wwdr.pem"),
            certificate: dir.join("demo-pass.pem"),
            key: dir.join("demo-pass.key"),
            google_key: dir.join("demo-google-service-account.json"),
        }
    }

    fn all(&self) -> [&PathBuf; 5] {
        [
            &self.root,
            &self.wwdr,
            &self.certificate,
            &self.key,
            &self.google_key,
        ]
    }
}

/// Makes the demo chain and key in `dir` unless they are there already. `fresh` says whether the
/// ones present still work (the caller checks expiry by loading them).
pub fn ensure(dir: &Path, now: Timestamp, fresh: bool) -> Result<DemoFiles, PassError> {
    let files = DemoFiles::in_dir(dir);
    if fresh && files.all().iter().all(|p| p.exists()) {
        return Ok(files);
    }
    std::fs::create_dir_all(dir).map_err(|e| PassError::Write {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let chain = issue_chain(&ChainSpec::demo(now))?;
    let (google_key, _) = rsa_key()?;
    let google = service_account_json(
        "tillpass-demo@tillpass-demo.iam.gserviceaccount.com",
        &google_key,
    );
    for (path, text) in [
        (&files.root, chain.root_pem.as_str()),
        (&files.wwdr, chain.wwdr_pem.as_str()),
        (&files.certificate, chain.pass_pem.as_str()),
        (&files.key, chain.pass_key_pem.as_str()),
        (&files.google_key, google.as_str()),
    ] {
        super::write_atomically(path, text.as_bytes())?;
    }
    Ok(files)
}
