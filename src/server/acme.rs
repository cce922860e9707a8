//! A publicly trusted certificate from an ACME authority (`serve --acme DOMAIN`; Let's Encrypt
//! unless told otherwise), for a server customers' phones reach. The TLS-ALPN-01 challenge is
//! answered by the server's own listener, so no plain HTTP port is opened. The account, the
//! certificate's key and the certificate are kept in the TLS directory and reused across
//! restarts; a certificate is renewed once less than a third of its lifetime remains and swapped
//! into the running listener, so the next handshake presents it. The key is kept across renewals,
//! so the server's key pin stays the same.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use der::Decode as _;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, ChallengeType, HttpClient,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::pg_tls::with_causes;
use super::tls::{TlsError, TlsIdentity, config_builder, file_err, write_private};

/// Let's Encrypt's production directory, the default authority.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The protocol an authority offers when it validates a TLS-ALPN-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

const ACCOUNT_FILE: &str = "acme-account.json";
const KEY_FILE: &str = "acme-key.pem";
const CERT_FILE: &str = "acme-cert.pem";

/// How long a renewal waits at most before looking at the clock again, so a suspended machine
/// or a clock change cannot make it miss its time.
const RECHECK: Duration = Duration::from_secs(3600);
/// The first wait after a failed renewal; it doubles up to [`RECHECK`].
const FIRST_RETRY: Duration = Duration::from_secs(60);
/// How long an authority may take to validate a challenge or to issue.
const POLL: RetryPolicy = RetryPolicy::new().timeout(Duration::from_secs(120));

/// Why a certificate could not be had from the authority.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("ACME with {directory}: {reason}")]
    Protocol { directory: String, reason: String },
}

/// What `serve --acme` was told.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The name the certificate is for, which must reach this server on port 443.
    pub domain: String,
    /// The authority's directory URL.
    pub directory: String,
    /// Contact URLs for the account (`mailto:…`).
    pub contacts: Vec<String>,
    /// A PEM root to trust for the directory besides the machine's authorities (a test CA).
    pub ca_root: Option<PathBuf>,
    /// Where the account, the key and the certificate are kept.
    pub dir: PathBuf,
}

/// The certificate obtained for one domain, kept, served and renewed.
pub struct Acme {
    settings: AcmeSettings,
    key: rcgen::KeyPair,
    current: Arc<Current>,
    challenges: Arc<Challenges>,
}

/// The certificate presented now; a renewal replaces it for the handshakes after it.
#[derive(Debug, Default)]
struct Current(RwLock<Option<Arc<CertifiedKey>>>);

impl Current {
    /// Presents `key` from the next handshake on.
    fn set(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(key);
    }

    /// The certificate presented now, if there is one yet.
    fn get(&self) -> Option<Arc<CertifiedKey>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
}

/// TLS-ALPN-01 answers by name, present only while an order waits for validation.
#[derive(Debug, Default)]
struct Challenges(RwLock<HashMap<String, Arc<CertifiedKey>>>);

impl ResolvesServerCert for Challenges {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?.to_ascii_lowercase();
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&name)
            .cloned()
    }
}

/// When a certificate valid from `not_before` to `not_after` is renewed: once a third of its
/// lifetime remains (30 days of Let's Encrypt's 90).
fn renewal_time(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    not_after - lifetime / 3
}

/// The validity period of a certificate (DER).
fn validity(cert: &CertificateDer<'_>) -> Result<(SystemTime, SystemTime), String> {
    let cert = x509_cert::Certificate::from_der(cert.as_ref())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let validity = cert.tbs_certificate().validity();
    Ok((
        validity.not_before.to_system_time(),
        validity.not_after.to_system_time(),
    ))
}

/// The pin of the key ACME certificates are kept with in `dir` (made on first use), for join
/// codes: it stays the same across renewals.
pub fn pin(dir: &Path) -> Result<String, TlsError> {
    Ok(crate::sync::tls::key_pin(
        &rcgen::PublicKeyData::subject_public_key_info(&certificate_key(dir)?),
    ))
}

/// The certificate key kept in `dir`, made on first use.
fn certificate_key(dir: &Path) -> Result<rcgen::KeyPair, TlsError> {
    let path = dir.join(KEY_FILE);
    if !path.exists() {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
        let made = rcgen::KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        write_private(&path, made.serialize_pem().as_bytes())?;
    }
    let pem = std::fs::read_to_string(&path).map_err(|e| file_err(&path, e))?;
    rcgen::KeyPair::from_pem(&pem).map_err(|e| file_err(&path, e))
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The account as kept: the authority it belongs to, and its credentials (with its key).
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptAccount {
    directory: String,
    credentials: AccountCredentials,
}

impl Acme {
    /// Opens what is kept in the TLS directory (making the certificate key on first use); a
    /// kept certificate that names the domain, fits the key and has not expired is served until
    /// it is renewed.
    pub fn open(settings: AcmeSettings) -> Result<Self, AcmeError> {
        if !matches!(
            ServerName::try_from(settings.domain.as_str()),
            Ok(ServerName::DnsName(_))
        ) {
            return Err(TlsError::Config(format!(
                "--acme needs a domain name, not {:?}",
                settings.domain
            ))
            .into());
        }
        let key = certificate_key(&settings.dir)?;
        let acme = Self {
            settings,
            key,
            current: Arc::default(),
            challenges: Arc::default(),
        };
        let path = acme.cert_path();
        if path.exists() {
            let kept = std::fs::read_to_string(&path).map_err(|e| file_err(&path, e))?;
            match acme.certified(&kept, SystemTime::now()) {
                Ok(key) => acme.current.set(key),
                Err(reason) => {
                    tracing::info!(certificate = %path.display(), %reason, "not reusing the kept certificate");
                }
            }
        }
        Ok(acme)
    }

    fn cert_path(&self) -> PathBuf {
        self.settings.dir.join(CERT_FILE)
    }

    /// What the listener serves: the current certificate, and the challenge answers.
    pub fn identity(&self) -> Result<TlsIdentity, TlsError> {
        let config = config_builder()?.with_cert_resolver(Arc::clone(&self.current) as _);
        let mut challenge = config_builder()?.with_cert_resolver(Arc::clone(&self.challenges) as _);
        challenge.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        Ok(TlsIdentity {
            config: Arc::new(config),
            pin: crate::sync::tls::key_pin(&rcgen::PublicKeyData::subject_public_key_info(
                &self.key,
            )),
            cert_path: self.cert_path(),
            acme_challenge: Some(Arc::new(challenge)),
        })
    }

    /// The certificate presented now, once there is one.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.get()
    }

    /// When the current certificate is due for renewal (now when there is none).
    fn renewal_due(&self) -> SystemTime {
        self.current()
            .and_then(|key| key.cert.first().and_then(|leaf| validity(leaf).ok()))
            .map_or(SystemTime::UNIX_EPOCH, |(from, to)| renewal_time(from, to))
    }

    /// A PEM chain (leaf first) with the kept key, ready to present, if it names the domain,
    /// fits the key and has not expired at `now`.
    fn certified(&self, chain_pem: &str, now: SystemTime) -> Result<Arc<CertifiedKey>, String> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let leaf = chain.first().ok_or("no certificate")?;
        let name = ServerName::try_from(self.settings.domain.as_str())
            .map_err(|e| format!("{}: {e}", self.settings.domain))?;
        rustls::client::verify_server_name(
            &rustls::server::ParsedCertificate::try_from(leaf).map_err(|e| e.to_string())?,
            &name,
        )
        .map_err(|_| format!("it does not name {}", self.settings.domain))?;
        let (_, not_after) = validity(leaf)?;
        if not_after <= now {
            return Err("it has expired".to_owned());
        }
        let key = PrivateKeyDer::Pkcs8(self.key.serialize_der().into());
        CertifiedKey::from_der(chain, key, &provider())
            .map(Arc::new)
            .map_err(|e| format!("it does not fit the kept key: {e}"))
    }

    /// Obtains a certificate now, keeps it, and presents it from the next handshake on. The
    /// listener must be accepting: the authority validates through it.
    pub async fn renew(&self) -> Result<(), AcmeError> {
        let problem = |reason: String| AcmeError::Protocol {
            directory: self.settings.directory.clone(),
            reason,
        };
        let account = self.account().await?;
        let mut answered = Vec::new();
        let chain = self.order(&account, &mut answered).await;
        {
            let mut challenges = self
                .challenges
                .0
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for name in answered {
                challenges.remove(&name);
            }
        }
        let chain = chain.map_err(problem)?;
        let certified = self
            .certified(&chain, SystemTime::now())
            .map_err(|e| problem(format!("the issued certificate: {e}")))?;
        let path = self.cert_path();
        crate::pass::write_atomically(&path, chain.as_bytes()).map_err(|e| file_err(&path, e))?;
        self.current.set(certified);
        Ok(())
    }

    /// Places an order for the domain, answers its challenges (naming each in `answered`, to be
    /// taken down by the caller) and returns the issued PEM chain.
    async fn order(&self, account: &Account, answered: &mut Vec<String>) -> Result<String, String> {
        let acme = |e: instant_acme::Error| with_causes(&e);
        let identifiers = [Identifier::Dns(self.settings.domain.clone())];
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(acme)?;
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(acme)?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("the authorization is {other:?}")),
            }
            let name = authorization.identifier().to_string().to_ascii_lowercase();
            let mut challenge = authorization
                .challenge(ChallengeType::TlsAlpn01)
                .ok_or("the authority offers no tls-alpn-01 challenge")?;
            let answer = challenge_answer(&name, challenge.key_authorization().digest().as_ref())?;
            self.challenges
                .0
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name.clone(), answer);
            answered.push(name);
            challenge.set_ready().await.map_err(acme)?;
        }
        let status = order.poll_ready(&POLL).await.map_err(acme)?;
        if status != OrderStatus::Ready {
            return Err(format!("the order is {status:?}, not ready"));
        }
        let mut csr = rcgen::CertificateParams::new(vec![self.settings.domain.clone()])
            .map_err(|e| e.to_string())?;
        csr.distinguished_name = rcgen::DistinguishedName::new();
        let csr = csr
            .serialize_request(&self.key)
            .map_err(|e| e.to_string())?;
        order.finalize_csr(csr.der()).await.map_err(acme)?;
        order.poll_certificate(&POLL).await.map_err(acme)
    }

    /// The account kept for this authority, or a new one (agreeing to its terms) kept from now.
    async fn account(&self) -> Result<Account, AcmeError> {
        let directory = &self.settings.directory;
        let problem = |reason: String| AcmeError::Protocol {
            directory: directory.clone(),
            reason,
        };
        let path = self.settings.dir.join(ACCOUNT_FILE);
        let kept = match std::fs::read(&path) {
            Ok(bytes) => Some(
                serde_json::from_slice::<KeptAccount>(&bytes).map_err(|e| file_err(&path, e))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(file_err(&path, e).into()),
        };
        let builder = Account::builder_with_http(self.http_client()?);
        if let Some(kept) = kept.filter(|kept| &kept.directory == directory) {
            return builder
                .from_credentials(kept.credentials)
                .await
                .map_err(|e| problem(with_causes(&e)));
        }
        let contacts: Vec<&str> = self.settings.contacts.iter().map(String::as_str).collect();
        let (account, credentials) = builder
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                directory.clone(),
                None,
            )
            .await
            .map_err(|e| problem(with_causes(&e)))?;
        let kept = KeptAccount {
            directory: directory.clone(),
            credentials,
        };
        let json = serde_json::to_vec_pretty(&kept).map_err(|e| file_err(&path, e))?;
        write_private(&path, &json)?;
        Ok(account)
    }

    /// HTTPS to the directory (ring), trusting the machine's authorities and the extra root.
    fn http_client(&self) -> Result<Box<dyn HttpClient>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = &self.settings.ca_root {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| file_err(path, e))? {
                roots
                    .add(cert.map_err(|e| file_err(path, e))?)
                    .map_err(|e| file_err(path, e))?;
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .build();
        Ok(Box::new(
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, BodyWrapper<bytes::Bytes>>(https),
        ))
    }

    /// Renews the certificate whenever it is due, for as long as the server runs; a failure is
    /// logged and retried after a minute, then after twice as long each time, up to an hour.
    pub async fn keep_renewed(self: Arc<Self>) {
        let mut retry = FIRST_RETRY;
        loop {
            let wait = self
                .renewal_due()
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            if !wait.is_zero() {
                tokio::time::sleep(wait.min(RECHECK)).await;
                continue;
            }
            match self.renew().await {
                Ok(()) => {
                    retry = FIRST_RETRY;
                    tracing::info!(domain = %self.settings.domain, "certificate renewed");
                }
                Err(e) => {
                    tracing::warn!(domain = %self.settings.domain, error = %e, retry_in = ?retry, "renewing the certificate");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RECHECK);
                }
            }
        }
    }
}

/// The self-signed certificate that answers a TLS-ALPN-01 challenge for `name`: it names only
/// `name` and carries the SHA-256 of the key authorization in a critical acmeIdentifier
/// extension (RFC 8737).
fn challenge_answer(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    // Not `CertifiedKey::from_der`: its key check parses the certificate with webpki, which
    // refuses the critical acmeIdentifier extension.
    let signing = provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn settings(dir: &Path) -> AcmeSettings {
        AcmeSettings {
            domain: "localhost".to_owned(),
            // Never reached: these tests place no order.
            directory: "https://127.0.0.1:9/dir".to_owned(),
            contacts: Vec::new(),
            ca_root: None,
            dir: dir.to_owned(),
        }
    }

    /// A certificate for `name` with `key`, valid from `from` for `days`, as PEM.
    fn cert_pem(name: &str, key: &rcgen::KeyPair, from: SystemTime, days: u64) -> String {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        params.not_before = from.into();
        params.not_after = (from + DAY * u32::try_from(days).expect("days")).into();
        params.self_signed(key).expect("certificate").pem()
    }

    #[test]
    fn a_certificate_is_renewed_once_a_third_of_its_lifetime_remains() {
        let issued = SystemTime::UNIX_EPOCH + DAY * 20_000;
        // Let's Encrypt: 90 days, renewed after 60.
        assert_eq!(renewal_time(issued, issued + DAY * 90), issued + DAY * 60);
        // Pebble's short test certificates: 15 seconds, renewed after 10.
        let short = Duration::from_secs(15);
        assert_eq!(
            renewal_time(issued, issued + short),
            issued + Duration::from_secs(10)
        );
        // A malformed certificate ending before it starts is due at its end.
        assert_eq!(renewal_time(issued + DAY, issued), issued);
    }

    #[test]
    fn a_kept_certificate_is_reused_only_for_its_domain_key_and_lifetime() {
        let dir = tempfile::tempdir().expect("dir");
        let acme = Acme::open(settings(dir.path())).expect("open");
        let now = SystemTime::now();
        let good = cert_pem("localhost", &acme.key, now - DAY, 90);
        assert!(acme.certified(&good, now).is_ok());
        let err = |pem: &str, at| acme.certified(pem, at).expect_err("refused");
        assert!(err(&good, now + DAY * 90).contains("expired"));
        let other_name = cert_pem("shop.example", &acme.key, now - DAY, 90);
        assert!(err(&other_name, now).contains("does not name localhost"));
        let other_key = rcgen::KeyPair::generate().expect("key");
        let other_key = cert_pem("localhost", &other_key, now - DAY, 90);
        assert!(err(&other_key, now).contains("does not fit the kept key"));

        // Kept on disk: a restart serves it, with the same key and so the same pin.
        std::fs::write(dir.path().join(CERT_FILE), &good).expect("write");
        let reopened = Acme::open(settings(dir.path())).expect("reopen");
        let served = reopened.current().expect("the kept certificate is served");
        let leaf = CertificateDer::from_pem_slice(good.as_bytes()).expect("pem");
        assert_eq!(served.cert[0], leaf);
        assert_eq!(
            reopened.identity().expect("identity").pin,
            pin(dir.path()).expect("pin")
        );
        assert_eq!(
            crate::sync::tls::spki_pin(&leaf).expect("pin"),
            pin(dir.path()).expect("pin")
        );

        let mut ip = settings(dir.path());
        ip.domain = "127.0.0.1".to_owned();
        assert!(Acme::open(ip).is_err(), "an address is not a domain");
    }

    /// Takes whatever certificate is presented: these tests compare it with the one expected.
    /// (A challenge answer cannot be checked by webpki at all: it refuses the critical
    /// acmeIdentifier extension that the answer must carry.)
    #[derive(Debug)]
    struct AnyCertificate;

    impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }

        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    fn client(alpn: &[u8]) -> tokio_rustls::TlsConnector {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate))
            .with_no_client_auth();
        if !alpn.is_empty() {
            config.alpn_protocols = vec![alpn.to_vec()];
        }
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// Connects to `addr` for localhost offering `alpn`: the certificate presented and the
    /// protocol agreed.
    async fn presented(
        addr: std::net::SocketAddr,
        alpn: &[u8],
    ) -> (CertificateDer<'static>, Option<Vec<u8>>) {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let tls = client(alpn)
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("handshake");
        let (_, conn) = tls.get_ref();
        (
            conn.peer_certificates().expect("certificates")[0].clone(),
            conn.alpn_protocol().map(<[u8]>::to_vec),
        )
    }

    #[tokio::test]
    async fn the_next_handshake_presents_a_new_certificate_and_validators_get_the_challenge() {
        let dir = tempfile::tempdir().expect("dir");
        let acme = Acme::open(settings(dir.path())).expect("open");
        let identity = acme.identity().expect("identity");
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let _listener = super::super::tls::TlsListener::new(tcp, &identity).expect("listener");
        let now = SystemTime::now();

        let first = cert_pem("localhost", &acme.key, now - DAY, 90);
        acme.current
            .set(acme.certified(&first, now).expect("first"));
        let (cert, alpn) = presented(addr, b"").await;
        assert_eq!(cert, acme.current().expect("current").cert[0]);
        assert_eq!(alpn, None);

        let renewed = cert_pem("localhost", &acme.key, now, 90);
        acme.current
            .set(acme.certified(&renewed, now).expect("renewed"));
        let (cert, _) = presented(addr, b"").await;
        assert_eq!(
            cert,
            CertificateDer::from_pem_slice(renewed.as_bytes()).expect("pem"),
            "the renewed certificate, without a new listener"
        );

        // A validator offering acme-tls/1 gets the challenge answer, and only while it is up.
        let answer = challenge_answer("localhost", &[7; 32]).expect("answer");
        acme.challenges
            .0
            .write()
            .expect("lock")
            .insert("localhost".to_owned(), Arc::clone(&answer));
        let (cert, alpn) = presented(addr, ACME_TLS_ALPN).await;
        assert_eq!(cert, answer.cert[0]);
        assert_eq!(alpn.as_deref(), Some(ACME_TLS_ALPN));
        let (cert, _) = presented(addr, b"").await;
        assert_eq!(
            cert,
            CertificateDer::from_pem_slice(renewed.as_bytes()).expect("pem"),
            "everyone else still gets the certificate"
        );
        acme.challenges.0.write().expect("lock").clear();
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        assert!(
            client(ACME_TLS_ALPN)
                .connect(ServerName::try_from("localhost").expect("name"), tcp)
                .await
                .is_err(),
            "no challenge is answered once the order is done"
        );
    }
}
