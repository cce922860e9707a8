//! The till's HTTP client for the sync protocol (reqwest, blocking, rustls with ring).

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde::de::DeserializeOwned;
use thiserror::Error;

use super::protocol::{
    BalanceResponse, CardLookup, ConfigQuery, ConfigResponse, DoubleSpendList, ErrorBody,
    MAX_RESPONSE_BYTES, MemberHistory, OwnQuery, PassLinkRequest, PassLinkResponse, PullQuery,
    PullResponse, PushRequest, PushResponse, SeedRequest, SeedResponse, TERMINAL_HEADER,
};
use crate::domain::{CardNumber, MemberId, TerminalId};
use crate::store::StoreError;

/// The longest a sync request may take (a push of a full batch over a slow line).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a sync step failed, in words a cashier or manager can act on.
#[derive(Debug, Error)]
pub enum SyncError {
    #[error("not connected to a server: run `tillpass sync --server URL --token TOKEN`")]
    NotConfigured,
    #[error(
        "refusing plain HTTP to another machine ({url}): every request would carry the token and members' details in clear; use https://, or allow it on purpose with --insecure-http"
    )]
    PlainHttp { url: String },
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the server refused this till's token: {0}")]
    Unauthorized(String),
    #[error("the server refused the data: {message}")]
    Refused {
        message: String,
        /// The rule the server named (e.g. `sequence_reused`), when it named one.
        rule: Option<String>,
    },
    #[error("the server is failing: {0}")]
    Server(String),
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SyncError {
    /// Offline (as opposed to online but refused).
    pub fn is_offline(&self) -> bool {
        matches!(self, SyncError::Unreachable { .. } | SyncError::Server(_))
    }
}

/// A connection to one server as one terminal.
#[derive(Debug, Clone)]
pub struct SyncClient {
    http: Client,
    base: String,
    token: String,
    terminal: TerminalId,
}

impl SyncClient {
    /// A client for `base` (e.g. `https://sync.example.com`), authenticating as `terminal`.
    pub fn new(base: &str, token: &str, terminal: TerminalId) -> Result<Self, SyncError> {
        Self::with_timeout(base, token, terminal, REQUEST_TIMEOUT)
    }

    /// The same with a shorter limit per request (for checks a cashier waits on).
    pub fn with_timeout(
        base: &str,
        token: &str,
        terminal: TerminalId,
        timeout: Duration,
    ) -> Result<Self, SyncError> {
        Self::trusting(base, token, terminal, timeout, None, false)
    }

    /// A client that trusts the server key `pin` (else the operating system's certificate
    /// authorities), and refuses plain HTTP to another machine unless `insecure_http`.
    pub fn trusting(
        base: &str,
        token: &str,
        terminal: TerminalId,
        timeout: Duration,
        pin: Option<&str>,
        insecure_http: bool,
    ) -> Result<Self, SyncError> {
        // reqwest uses rustls with whichever crypto provider the process installed: ring here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = base.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(SyncError::Protocol(format!(
                "the server address must start with https:// or http://, not {base:?}"
            )));
        }
        if !insecure_http && super::tls::is_plain_http_to_another_host(&base) {
            return Err(SyncError::PlainHttp { url: base });
        }
        let builder = Client::builder()
            .connect_timeout(timeout.min(CONNECT_TIMEOUT))
            .timeout(timeout)
            .user_agent(concat!("tillpass/", env!("CARGO_PKG_VERSION")));
        let builder = match pin {
            Some(pin) => builder.tls_backend_preconfigured(super::tls::pinned_config(pin)),
            None => builder,
        };
        let http = builder
            .build()
            .map_err(|e| SyncError::Protocol(e.to_string()))?;
        Ok(SyncClient {
            http,
            base,
            token: token.trim().to_owned(),
            terminal,
        })
    }

    /// The server's address.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header(TERMINAL_HEADER, &self.terminal.0)
    }

    fn answer<T: DeserializeOwned>(&self, sent: reqwest::Result<Response>) -> Result<T, SyncError> {
        let response = sent.map_err(|e| {
            let mut reason = root_cause(&e);
            if reason.contains("invalid peer certificate") {
                reason.push_str(
                    "; a server with its own certificate is joined with its join code, which carries the key pin",
                );
            }
            SyncError::Unreachable {
                url: self.base.clone(),
                reason,
            }
        })?;
        let status = response.status();
        let bytes = read_limited(response)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| SyncError::Protocol(e.to_string()));
        }
        let text = String::from_utf8_lossy(&bytes);
        let (message, rule) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => (body.error, body.rule),
            Err(_) => (format!("{status}: {}", text.trim()), None),
        };
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => SyncError::Unauthorized(message),
            s if s.is_server_error() => SyncError::Server(message),
            _ => SyncError::Refused { message, rule },
        })
    }

    /// Sends a batch; the answer says what was new and what was a repeat.
    pub fn push(&self, batch: &PushRequest) -> Result<PushResponse, SyncError> {
        self.answer(
            self.request(reqwest::Method::POST, "/v1/sync/push")
                .json(batch)
                .send(),
        )
    }

    /// The page of records after `after`.
    pub fn pull(&self, after: i64, limit: usize) -> Result<PullResponse, SyncError> {
        self.answer(
            self.request(reqwest::Method::GET, "/v1/sync/pull")
                .query(&PullQuery { after, limit })
                .send(),
        )
    }

    /// The program in force, its member-code key, the versions after `query.known` and what
    /// the till checks before it pushes and pulls.
    pub fn config(&self, query: ConfigQuery) -> Result<ConfigResponse, SyncError> {
        self.answer(
            self.request(reqwest::Method::GET, "/v1/sync/config")
                .query(&query)
                .send(),
        )
    }

    /// Offers this till's member-code key to a server that holds no members yet.
    pub fn seed(&self, key: &[u8; 32]) -> Result<SeedResponse, SyncError> {
        self.answer(
            self.request(reqwest::Method::POST, "/v1/sync/seed")
                .json(&SeedRequest {
                    code_key: data_encoding::BASE64.encode(key),
                })
                .send(),
        )
    }

    /// This till's own entries on the server after terminal_seq `after`.
    pub fn own(&self, after: i64, limit: usize) -> Result<PullResponse, SyncError> {
        self.answer(
            self.request(reqwest::Method::GET, "/v1/sync/own")
                .query(&OwnQuery { after, limit })
                .send(),
        )
    }

    /// A member's balance as the server knows it now.
    pub fn balance(&self, member: MemberId) -> Result<BalanceResponse, SyncError> {
        self.answer(
            self.request(
                reqwest::Method::GET,
                &format!("/v1/members/{member}/balance"),
            )
            .send(),
        )
    }

    /// The member's record and their entries from other tills, as the server holds them.
    pub fn member_history(&self, member: MemberId) -> Result<MemberHistory, SyncError> {
        self.answer(
            self.request(
                reqwest::Method::GET,
                &format!("/v1/members/{member}/history"),
            )
            .send(),
        )
    }

    /// The member holding `card` as the server knows them, with their live balance.
    pub fn member_by_card(&self, card: &CardNumber) -> Result<CardLookup, SyncError> {
        self.answer(
            self.request(
                reqwest::Method::GET,
                &format!("/v1/members/by-card/{}", card.as_str()),
            )
            .send(),
        )
    }

    /// A link to the member's wallet pass, issued by the server (which holds the wallet keys).
    pub fn pass_link(&self, member: MemberId) -> Result<PassLinkResponse, SyncError> {
        self.answer(
            self.request(reqwest::Method::POST, "/v1/passes/link")
                .json(&PassLinkRequest { member_id: member })
                .send(),
        )
    }

    /// Redemptions that overdrew a balance.
    pub fn double_spends(&self) -> Result<DoubleSpendList, SyncError> {
        self.answer(
            self.request(reqwest::Method::GET, "/v1/double-spends")
                .send(),
        )
    }
}

/// The answer's body, refused past [`MAX_RESPONSE_BYTES`] (declared or read).
fn read_limited(response: Response) -> Result<Vec<u8>, SyncError> {
    use std::io::Read as _;
    let too_large = || {
        SyncError::Protocol(format!(
            "the server's answer is over {MAX_RESPONSE_BYTES} bytes; refusing to read it"
        ))
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    response
        .take(MAX_RESPONSE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| SyncError::Protocol(root_cause(&e)))?;
    if bytes.len() > MAX_RESPONSE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// The innermost cause of an error: "Connection refused (os error 111)" rather than a chain.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
