//! The till's HTTP client for the sync protocol (reqwest, blocking, rustls with ring).

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde::de::DeserializeOwned;
use thiserror::Error;

use super::protocol::{
    BalanceResponse, ConfigResponse, DoubleSpendList, ErrorBody, PullQuery, PullResponse,
    PushRequest, PushResponse, TERMINAL_HEADER,
};
use crate::domain::{MemberId, TerminalId};
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
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the server refused this till's token: {0}")]
    Unauthorized(String),
    #[error("the server refused the data: {0}")]
    Refused(String),
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
        // reqwest uses rustls with whichever crypto provider the process installed: ring here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = base.trim().trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(SyncError::Protocol(format!(
                "the server address must start with https:// or http://, not {base:?}"
            )));
        }
        let http = Client::builder()
            .connect_timeout(timeout.min(CONNECT_TIMEOUT))
            .timeout(timeout)
            .user_agent(concat!("tillpass/", env!("CARGO_PKG_VERSION")))
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
        let response = sent.map_err(|e| SyncError::Unreachable {
            url: self.base.clone(),
            reason: root_cause(&e),
        })?;
        let status = response.status();
        if status.is_success() {
            return response
                .json()
                .map_err(|e| SyncError::Protocol(root_cause(&e)));
        }
        let text = response.text().unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or_else(|_| format!("{status}: {}", text.trim()));
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => SyncError::Unauthorized(message),
            s if s.is_server_error() => SyncError::Server(message),
            _ => SyncError::Refused(message),
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

    /// The program in force and its member-code key.
    pub fn config(&self) -> Result<ConfigResponse, SyncError> {
        self.answer(self.request(reqwest::Method::GET, "/v1/sync/config").send())
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

    /// Redemptions that overdrew a balance.
    pub fn double_spends(&self) -> Result<DoubleSpendList, SyncError> {
        self.answer(
            self.request(reqwest::Method::GET, "/v1/double-spends")
                .send(),
        )
    }
}

/// The innermost cause of an error: "Connection refused (os error 111)" rather than a chain.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
