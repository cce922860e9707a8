//! The Pass Type ID signing identity and the detached CMS signature over `manifest.json`.
//!
//! The CMS structure is built with the RustCrypto `cms`/`x509-cert`/`der` types; the RSA
//! PKCS#1 v1.5 signature is made by ring (constant time). Both certificates are embedded as the
//! exact DER bytes they were loaded from.

use std::path::{Path, PathBuf};

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{Any, OctetString, SetOfVec, UtcTime};
use der::{Decode, Encode, oid::ObjectIdentifier};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use sha2::{Digest, Sha256};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_cert::attr::Attribute;
use x509_cert::time::Time;

use super::PassError;
use crate::domain::Timestamp;

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const ID_UID: ObjectIdentifier = ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.1");
const ID_OU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.11");

/// Where each part of the signing identity comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A certificate file (PEM or DER) and a separate PEM key (PKCS#8 or PKCS#1).
    Pem { certificate: PathBuf, key: PathBuf },
    /// A PKCS#12 bundle holding the certificate and its key.
    P12 { bundle: PathBuf, password: String },
}

/// A private key as stored: PKCS#8, or PKCS#1 (`RSA PRIVATE KEY`).
#[derive(Clone)]
pub enum KeyDer {
    Pkcs8(Vec<u8>),
    Pkcs1(Vec<u8>),
}

/// A loaded, checked Pass Type ID identity: certificate, key and the WWDR intermediate.
pub struct PassSigner {
    cert: Certificate,
    cert_der: Vec<u8>,
    key_der: KeyDer,
    wwdr_der: Vec<u8>,
    key: RsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for PassSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PassSigner(..)")
    }
}

impl PassSigner {
    /// Loads and checks the identity: the key matches the certificate, the WWDR certificate
    /// issued it, both are valid at `now`, and its UID/OU name the configured identifiers.
    pub fn load(
        source: &KeySource,
        wwdr: &Path,
        pass_type_identifier: &str,
        team_identifier: &str,
        now: Timestamp,
    ) -> Result<Self, PassError> {
        let (cert_der, (key, key_der), cert_path, key_path) = match source {
            KeySource::Pem { certificate, key } => {
                let cert_der = read_certificate(certificate)?;
                let key_pair = read_key(key)?;
                (cert_der, key_pair, certificate.clone(), key.clone())
            }
            KeySource::P12 { bundle, password } => {
                let (cert_der, key_pair) = read_p12(bundle, password)?;
                (cert_der, key_pair, bundle.clone(), bundle.clone())
            }
        };
        let cert = parse_certificate(&cert_der, &cert_path)?;
        let wwdr_der = read_certificate(wwdr)?;
        let wwdr_cert = parse_certificate(&wwdr_der, wwdr)?;

        let spki = &cert.tbs_certificate().subject_public_key_info();
        if spki.algorithm.oid != RSA_ENCRYPTION {
            return Err(PassError::Certificate {
                path: cert_path.display().to_string(),
                reason: "the pass certificate must hold an RSA key".into(),
            });
        }
        if spki.subject_public_key.raw_bytes() != key.public().as_ref() {
            return Err(PassError::KeyMismatch {
                certificate: cert_path.display().to_string(),
                key: key_path.display().to_string(),
            });
        }
        check_validity(&cert, &cert_path, now)?;
        check_validity(&wwdr_cert, wwdr, now)?;
        if cert.tbs_certificate().issuer() != wwdr_cert.tbs_certificate().subject()
            || !issued_by(&cert, &wwdr_cert)
        {
            return Err(PassError::WrongIntermediate {
                wwdr: wwdr.display().to_string(),
                issuer: cert.tbs_certificate().issuer().to_string(),
                wwdr_subject: wwdr_cert.tbs_certificate().subject().to_string(),
            });
        }
        let subject = cert.tbs_certificate().subject();
        for (oid, field, wanted) in [
            (ID_UID, "pass_type_identifier", pass_type_identifier),
            (ID_OU, "team_identifier", team_identifier),
        ] {
            let found = name_text(subject, oid);
            if found.as_deref() != Some(wanted) {
                return Err(PassError::IdentifierMismatch {
                    field,
                    configured: wanted.to_owned(),
                    certificate: found.unwrap_or_else(|| "(none)".into()),
                    path: cert_path.display().to_string(),
                });
            }
        }
        Ok(PassSigner {
            cert,
            cert_der,
            key_der,
            wwdr_der,
            key,
            rng: SystemRandom::new(),
        })
    }

    /// The DER bytes of the Pass Type ID certificate.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The DER bytes of the WWDR intermediate that issued the certificate.
    pub fn wwdr_der(&self) -> &[u8] {
        &self.wwdr_der
    }

    /// The certificate's private key, for APNs, which takes the same identity as a TLS client.
    pub fn key_der(&self) -> &KeyDer {
        &self.key_der
    }

    /// A detached CMS SignedData (DER) over `content`: SHA-256, signing time `at`, the pass
    /// certificate and the WWDR intermediate embedded.
    pub fn sign_detached(&self, content: &[u8], at: Timestamp) -> Result<Vec<u8>, PassError> {
        let digest = Sha256::digest(content);
        let sha256 = AlgorithmIdentifierOwned {
            oid: ID_SHA256,
            parameters: None,
        };
        let signing_time = UtcTime::from_unix_duration(std::time::Duration::from_millis(
            u64::try_from(at.millis()).map_err(|_| sign_err("signing time before 1970"))?,
        ))
        .map_err(der_err)?;
        let signed_attrs = SetOfVec::try_from(vec![
            attribute(
                ID_CONTENT_TYPE,
                Any::encode_from(&ID_DATA).map_err(der_err)?,
            )?,
            attribute(
                ID_SIGNING_TIME,
                Any::encode_from(&Time::UtcTime(signing_time)).map_err(der_err)?,
            )?,
            attribute(
                ID_MESSAGE_DIGEST,
                Any::encode_from(&OctetString::new(digest.to_vec()).map_err(der_err)?)
                    .map_err(der_err)?,
            )?,
        ])
        .map_err(der_err)?;
        // The signature covers the DER of the attributes as a SET (RFC 5652 section 5.4).
        let to_sign = signed_attrs.to_der().map_err(der_err)?;
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, &to_sign, &mut signature)
            .map_err(|_| sign_err("the RSA signature failed"))?;

        let tbs = self.cert.tbs_certificate();
        let signer = SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: tbs.issuer().clone(),
                serial_number: tbs.serial_number().clone(),
            }),
            digest_alg: sha256.clone(),
            signed_attrs: Some(signed_attrs),
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: SHA256_WITH_RSA,
                parameters: Some(Any::null()),
            },
            signature: OctetString::new(signature).map_err(der_err)?,
            unsigned_attrs: None,
        };
        let wwdr = Certificate::from_der(&self.wwdr_der).map_err(der_err)?;
        let signed = SignedData {
            version: CmsVersion::V1,
            digest_algorithms: SetOfVec::try_from(vec![sha256]).map_err(der_err)?,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: ID_DATA,
                econtent: None,
            },
            certificates: Some(
                CertificateSet::try_from(vec![
                    CertificateChoices::Certificate(self.cert.clone()),
                    CertificateChoices::Certificate(wwdr),
                ])
                .map_err(der_err)?,
            ),
            crls: None,
            signer_infos: SignerInfos::try_from(vec![signer]).map_err(der_err)?,
        };
        ContentInfo {
            content_type: ID_SIGNED_DATA,
            content: Any::encode_from(&signed).map_err(der_err)?,
        }
        .to_der()
        .map_err(der_err)
    }
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, PassError> {
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![value]).map_err(der_err)?,
    })
}

fn der_err(e: der::Error) -> PassError {
    sign_err(&format!("could not encode the signature: {e}"))
}

fn sign_err(reason: &str) -> PassError {
    PassError::Sign(reason.to_owned())
}

fn read(path: &Path) -> Result<Vec<u8>, PassError> {
    std::fs::read(path).map_err(|e| PassError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Reads a certificate file, PEM (`CERTIFICATE`) or DER (Apple's `.cer` downloads).
fn read_certificate(path: &Path) -> Result<Vec<u8>, PassError> {
    let bytes = read(path)?;
    if bytes.starts_with(b"-----BEGIN") {
        let (label, der) = der::pem::decode_vec(&bytes).map_err(|e| PassError::Certificate {
            path: path.display().to_string(),
            reason: format!("not a PEM certificate: {e}"),
        })?;
        if label != "CERTIFICATE" {
            return Err(PassError::Certificate {
                path: path.display().to_string(),
                reason: format!("holds a PEM \"{label}\", not a CERTIFICATE"),
            });
        }
        Ok(der)
    } else {
        Ok(bytes)
    }
}

/// Parses DER, insisting the bytes re-encode identically (they are embedded as they are).
fn parse_certificate(der: &[u8], path: &Path) -> Result<Certificate, PassError> {
    let bad = |reason: String| PassError::Certificate {
        path: path.display().to_string(),
        reason,
    };
    let cert =
        Certificate::from_der(der).map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
    if cert.to_der().map_err(|e| bad(e.to_string()))? != der {
        return Err(bad("the certificate is not canonical DER".into()));
    }
    Ok(cert)
}

/// Reads an unencrypted RSA private key: PEM PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
fn read_key(path: &Path) -> Result<(RsaKeyPair, KeyDer), PassError> {
    let bad = |reason: String| PassError::Key {
        path: path.display().to_string(),
        reason,
    };
    let bytes = read(path)?;
    let (label, der) =
        der::pem::decode_vec(&bytes).map_err(|e| bad(format!("not a PEM private key: {e}")))?;
    match label {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der).map(|k| (k, KeyDer::Pkcs8(der))),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der).map(|k| (k, KeyDer::Pkcs1(der))),
        "ENCRYPTED PRIVATE KEY" => {
            return Err(bad(
                "the key is encrypted; decrypt it with `openssl pkcs8 -topk8 -nocrypt`".into(),
            ));
        }
        other => return Err(bad(format!("holds a PEM \"{other}\", not a private key"))),
    }
    .map_err(|e| bad(format!("not a usable RSA private key ({e})")))
}

/// Reads the first certificate-and-key entry of a PKCS#12 bundle.
fn read_p12(path: &Path, password: &str) -> Result<(Vec<u8>, (RsaKeyPair, KeyDer)), PassError> {
    let bad = |reason: String| PassError::Key {
        path: path.display().to_string(),
        reason,
    };
    let store = p12_keystore::KeyStore::from_pkcs12(
        &read(path)?,
        password,
        p12_keystore::Pkcs12ImportPolicy::Strict,
    )
    .map_err(|e| {
        bad(format!(
            "cannot open the PKCS#12 bundle (wrong password?): {e}"
        ))
    })?;
    let (_, chain) = store
        .private_key_chain()
        .ok_or_else(|| bad("the PKCS#12 bundle holds no private key".into()))?;
    let cert = chain
        .certs()
        .first()
        .ok_or_else(|| bad("the PKCS#12 bundle holds no certificate".into()))?;
    let key = RsaKeyPair::from_pkcs8(chain.key().as_der()).map_err(|e| {
        bad(format!(
            "the key in the bundle is not a usable RSA key ({e})"
        ))
    })?;
    Ok((
        cert.as_der().to_vec(),
        (key, KeyDer::Pkcs8(chain.key().as_der().to_vec())),
    ))
}

/// Whether `issuer`'s key made `cert`'s signature.
fn issued_by(cert: &Certificate, issuer: &Certificate) -> bool {
    use ring::signature as sig;
    let algorithm: &dyn sig::VerificationAlgorithm =
        match cert.signature_algorithm().oid.to_string().as_str() {
            "1.2.840.113549.1.1.11" => &sig::RSA_PKCS1_2048_8192_SHA256,
            "1.2.840.113549.1.1.12" => &sig::RSA_PKCS1_2048_8192_SHA384,
            "1.2.840.113549.1.1.13" => &sig::RSA_PKCS1_2048_8192_SHA512,
            "1.2.840.10045.4.3.2" => &sig::ECDSA_P256_SHA256_ASN1,
            "1.2.840.10045.4.3.3" => &sig::ECDSA_P384_SHA384_ASN1,
            _ => return false,
        };
    let Ok(tbs) = cert.tbs_certificate().to_der() else {
        return false;
    };
    let Some(signature) = cert.signature().as_bytes() else {
        return false;
    };
    let key = issuer
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes();
    sig::UnparsedPublicKey::new(algorithm, key)
        .verify(&tbs, signature)
        .is_ok()
}

fn check_validity(cert: &Certificate, path: &Path, now: Timestamp) -> Result<(), PassError> {
    let validity = cert.tbs_certificate().validity();
    let now_ms = now.millis();
    let ms = |t: &Time| i64::try_from(t.to_unix_duration().as_millis()).unwrap_or(i64::MAX);
    if now_ms > ms(&validity.not_after) {
        return Err(PassError::Expired {
            path: path.display().to_string(),
            not_after: validity.not_after.to_string(),
        });
    }
    if now_ms < ms(&validity.not_before) {
        return Err(PassError::NotYetValid {
            path: path.display().to_string(),
            not_before: validity.not_before.to_string(),
        });
    }
    Ok(())
}

/// The text of the first attribute `oid` in a distinguished name.
fn name_text(name: &x509_cert::name::Name, oid: ObjectIdentifier) -> Option<String> {
    name.iter().find(|atv| atv.oid == oid).and_then(|atv| {
        let value = &atv.value;
        value
            .decode_as::<der::asn1::Utf8StringRef<'_>>()
            .map(|s| s.as_str().to_owned())
            .or_else(|_| {
                value
                    .decode_as::<der::asn1::PrintableStringRef<'_>>()
                    .map(|s| s.as_str().to_owned())
            })
            .or_else(|_| {
                value
                    .decode_as::<der::asn1::Ia5StringRef<'_>>()
                    .map(|s| s.as_str().to_owned())
            })
            .ok()
    })
}
