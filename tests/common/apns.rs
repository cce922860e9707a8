//! A stand-in for Apple's push service on 127.0.0.1: HTTP/2 over TLS that admits only clients
//! presenting a certificate chained to the test's Apple root (the pass certificate), and
//! records every push; answers can be scripted per push token.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Version};
use axum::response::IntoResponse;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One push the stand-in received.
#[derive(Debug, Clone)]
pub struct Push {
    pub token: String,
    pub topic: String,
    pub http2: bool,
    pub body: String,
    /// What the stand-in answered.
    pub status: u16,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// Answers to give a push token, in order (status, Retry-After seconds); then 200.
pub type Script = Arc<Mutex<HashMap<String, VecDeque<(u16, Option<u64>)>>>>;

#[derive(Clone)]
pub struct Apns {
    pub pushes: mpsc::UnboundedSender<Push>,
    pub script: Script,
}

pub async fn apns_push(
    State(apns): State<Apns>,
    UrlPath(token): UrlPath<String>,
    version: Version,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let topic = headers
        .get("apns-topic")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (status, retry_after) = apns
        .script
        .lock()
        .expect("lock")
        .get_mut(&token)
        .and_then(VecDeque::pop_front)
        .unwrap_or((200, None));
    let _ = apns.pushes.send(Push {
        token,
        topic,
        http2: version == Version::HTTP_2,
        body,
        status,
        at: std::time::Instant::now(),
    });
    let reason = match status {
        200 => "",
        410 => r#"{"reason":"Unregistered"}"#,
        429 => r#"{"reason":"TooManyRequests"}"#,
        _ => r#"{"reason":"ServiceUnavailable"}"#,
    };
    let mut response = (
        StatusCode::from_u16(status).expect("a status"),
        reason.to_owned(),
    )
        .into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(
            "retry-after",
            seconds.to_string().parse().expect("a header value"),
        );
    }
    response
}

/// TLS connections whose client presented a certificate chaining to the test's Apple root.
pub struct ClientAuthTls {
    pub tcp: TcpListener,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for ClientAuthTls {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// The APNs stand-in's certificate and the test Apple root its clients must chain to.
pub struct ApnsIdentity {
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
    /// The CA file that trusts its certificate.
    pub ca: PathBuf,
    pub apple_root_pem: String,
}

impl ApnsIdentity {
    pub fn new(dir: &Path, apple_root_pem: &str) -> Self {
        let root_key = rcgen::KeyPair::generate().expect("key");
        let mut root = rcgen::CertificateParams::new(Vec::new()).expect("params");
        root.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        root.distinguished_name
            .push(rcgen::DnType::CommonName, "tillpass test: APNs root");
        let root_cert = root.self_signed(&root_key).expect("root");
        let issuer = rcgen::Issuer::new(root, root_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("certificate");
        let ca = dir.join("apns-ca.pem");
        std::fs::write(&ca, root_cert.pem()).expect("write");
        Self {
            cert,
            key,
            ca,
            apple_root_pem: apple_root_pem.to_owned(),
        }
    }

    pub fn tls(&self) -> rustls::ServerConfig {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut apple_roots = rustls::RootCertStore::empty();
        apple_roots
            .add(CertificateDer::from_pem_slice(self.apple_root_pem.as_bytes()).expect("root"))
            .expect("add root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(apple_roots),
            Arc::clone(&provider),
        )
        .build()
        .expect("client verifier");
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![self.cert.der().clone()],
                PrivateKeyDer::from_pem_slice(self.key.serialize_pem().as_bytes()).expect("key"),
            )
            .expect("server config");
        config.alpn_protocols = vec![b"h2".to_vec()];
        config
    }
}

/// The APNs stand-in, running on its own runtime until dropped.
pub struct ApnsStandIn {
    pub url: String,
    pub port: u16,
    pub pushes: mpsc::UnboundedReceiver<Push>,
    pub script: Script,
    pub runtime: Option<tokio::runtime::Runtime>,
}

impl ApnsStandIn {
    /// Takes the stand-in down: its port refuses connections until one starts on it again.
    pub fn stop(&mut self) {
        drop(self.runtime.take());
    }
}

/// Starts the stand-in on `port` (0: any free one).
pub fn start_apns(identity: &ApnsIdentity, port: u16, script: Script) -> ApnsStandIn {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (pushes, received) = mpsc::unbounded_channel();
    let state = Apns {
        pushes,
        script: Arc::clone(&script),
    };
    let tcp = runtime
        .block_on(TcpListener::bind(("127.0.0.1", port)))
        .expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let listener = ClientAuthTls {
        tcp,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(identity.tls())),
    };
    let app = axum::Router::new()
        .route("/3/device/{token}", axum::routing::post(apns_push))
        .with_state(state);
    runtime.spawn(async move { axum::serve(listener, app).await });
    ApnsStandIn {
        url: format!("https://{addr}"),
        port: addr.port(),
        pushes: received,
        script,
        runtime: Some(runtime),
    }
}
