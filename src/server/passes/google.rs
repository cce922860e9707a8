//! Google Wallet's REST API (Wallet Objects v1) for loyalty cards: the tier classes and each
//! member's object inserted, updated and patched with an OAuth 2.0 service-account token.
//!
//! The token comes from a signed JWT grant (RFC 7523) posted to the key file's `token_uri`; it is
//! kept until a minute before it expires and shared by concurrent calls, and an API answer of 401
//! drops it and tries once more with a new one. Every failure says whether trying again later can
//! help ([`GoogleApiError::is_retryable`]); the caller (the pass update queue) owns the backoff.
//! Timeouts are the given [`reqwest::Client`]'s.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode, Url};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::Mutex;

use crate::domain::Timestamp;
use crate::pass::google::{LoyaltyClass, LoyaltyObject, ServiceAccountKey};

/// Google's Wallet Objects API, without a trailing `/`.
pub const PRODUCTION_API_BASE: &str = "https://walletobjects.googleapis.com/walletobjects/v1";

/// The OAuth 2.0 scope that lets a service account manage its issuer's classes and objects.
pub const WALLET_SCOPE: &str = "https://www.googleapis.com/auth/wallet_object.issuer";

/// The OAuth 2.0 grant type of a signed JWT assertion (RFC 7523).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long a token-request JWT is valid (Google accepts at most an hour).
const ASSERTION_LIFETIME_SECS: i64 = 3600;

/// A token is replaced this long before Google says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// Where the client asks for tokens and sends API calls; tests point both at local servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleEndpoints {
    /// The OAuth 2.0 token endpoint, also the `aud` of the token-request JWT.
    pub token_url: String,
    /// The Wallet Objects API root, e.g. [`PRODUCTION_API_BASE`]; `loyaltyClass` and
    /// `loyaltyObject` are appended to it.
    pub api_base: String,
}

impl GoogleEndpoints {
    /// Google's own: the key file's `token_uri` and [`PRODUCTION_API_BASE`].
    pub fn production(key: &ServiceAccountKey) -> Self {
        GoogleEndpoints {
            token_url: key.token_uri.clone(),
            api_base: PRODUCTION_API_BASE.to_owned(),
        }
    }
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// The resource was new.
    Inserted,
    /// It existed (the insert answered 409) and was updated.
    Updated,
}

/// Why a call to Google failed, and whether trying again later can help.
#[derive(Debug, Error)]
pub enum GoogleApiError {
    /// The client cannot work as set up (a key that cannot sign, an endpoint that is not a
    /// URL). Permanent.
    #[error("Google Wallet client setup: {0}")]
    Setup(String),
    /// The OAuth token endpoint failed or refused the service account's JWT. Retryable when
    /// `status` is `None` (network), 429 or 5xx; a refusal (400 `invalid_grant`, 401) is not.
    #[error("Google token endpoint {}: {message}", describe(*.status))]
    Token {
        status: Option<u16>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Google cannot take the call now: 429, 5xx, or a network failure (`status` `None`).
    /// Retryable, after `retry_after` when Google said.
    #[error("Google Wallet API unavailable ({}): {message}", describe(*.status))]
    Unavailable {
        status: Option<u16>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Google refused the call (another 4xx) with its own message. Permanent: the same call
    /// will be refused again.
    #[error("Google Wallet API refused the call ({status}): {message}")]
    Refused { status: u16, message: String },
}

fn describe(status: Option<u16>) -> String {
    status.map_or_else(|| "network error".to_owned(), |s| format!("HTTP {s}"))
}

fn retryable_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

impl GoogleApiError {
    /// Whether the same call may succeed later (network, 429, 5xx, at either endpoint).
    pub fn is_retryable(&self) -> bool {
        match self {
            GoogleApiError::Setup(_) | GoogleApiError::Refused { .. } => false,
            GoogleApiError::Token { status, .. } => status.is_none_or(retryable_status),
            GoogleApiError::Unavailable { .. } => true,
        }
    }

    /// How long Google asked the caller to wait (its `Retry-After` header), if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GoogleApiError::Token { retry_after, .. }
            | GoogleApiError::Unavailable { retry_after, .. } => *retry_after,
            GoogleApiError::Setup(_) | GoogleApiError::Refused { .. } => None,
        }
    }

    /// The HTTP status Google answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            GoogleApiError::Token { status, .. } | GoogleApiError::Unavailable { status, .. } => {
                *status
            }
            GoogleApiError::Refused { status, .. } => Some(*status),
            GoogleApiError::Setup(_) => None,
        }
    }
}

/// The claims of the JWT that asks for an access token.
#[derive(Debug, Serialize)]
struct GrantClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

/// The token endpoint's answer.
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

/// A token and when to stop using it.
struct AccessToken {
    value: String,
    replace_at: Instant,
}

/// A client of Google's Wallet Objects API for one issuer's service account.
pub struct GoogleWalletApi {
    http: reqwest::Client,
    token_url: String,
    api_base: Url,
    issuer_email: String,
    key_id: String,
    key: EncodingKey,
    token: Mutex<Option<AccessToken>>,
}

impl std::fmt::Debug for GoogleWalletApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleWalletApi")
            .field("token_url", &self.token_url)
            .field("api_base", &self.api_base.as_str())
            .field("issuer_email", &self.issuer_email)
            .finish_non_exhaustive()
    }
}

impl GoogleWalletApi {
    /// A client for `key`'s service account; checks the key and the endpoints now, so a bad
    /// setup fails at start-up rather than at the first update.
    pub fn new(
        key: ServiceAccountKey,
        endpoints: GoogleEndpoints,
        http: reqwest::Client,
    ) -> Result<Self, GoogleApiError> {
        let signing = EncodingKey::from_rsa_pem(key.private_key.as_bytes()).map_err(|e| {
            GoogleApiError::Setup(format!("\"private_key\" is not an RSA PEM key: {e}"))
        })?;
        Url::parse(&endpoints.token_url).map_err(|e| {
            GoogleApiError::Setup(format!(
                "token URL \"{}\" is not a URL: {e}",
                endpoints.token_url
            ))
        })?;
        let api_base = Url::parse(&endpoints.api_base)
            .ok()
            .filter(|u| !u.cannot_be_a_base())
            .ok_or_else(|| {
                GoogleApiError::Setup(format!(
                    "API base \"{}\" is not an http(s) URL",
                    endpoints.api_base
                ))
            })?;
        let api = GoogleWalletApi {
            http,
            token_url: endpoints.token_url,
            api_base,
            issuer_email: key.client_email,
            key_id: key.private_key_id,
            key: signing,
            token: Mutex::new(None),
        };
        api.grant_assertion()?;
        Ok(api)
    }

    /// Inserts `class`, or replaces it (PUT) when it exists. Clients may only set
    /// `reviewStatus` to `DRAFT` or `UNDER_REVIEW`, and an approved class is updated as
    /// `UNDER_REVIEW`, so any other status is sent as `UNDER_REVIEW`.
    pub async fn upsert_class(&self, class: &LoyaltyClass) -> Result<Upserted, GoogleApiError> {
        let mut class = class.clone();
        if !matches!(
            class.review_status.as_str(),
            "DRAFT" | "draft" | "UNDER_REVIEW" | "underReview"
        ) {
            class.review_status = "UNDER_REVIEW".into();
        }
        let inserted = self
            .send(Method::POST, self.url("loyaltyClass", None), &class)
            .await?;
        if inserted.status() == StatusCode::CONFLICT {
            let url = self.url("loyaltyClass", Some(&class.id));
            check(self.send(Method::PUT, url, &class).await?).await?;
            return Ok(Upserted::Updated);
        }
        check(inserted).await?;
        Ok(Upserted::Inserted)
    }

    /// Inserts `object`, or patches the existing object with all of it. Its class must exist.
    pub async fn upsert_object(&self, object: &LoyaltyObject) -> Result<Upserted, GoogleApiError> {
        let inserted = self
            .send(Method::POST, self.url("loyaltyObject", None), object)
            .await?;
        if inserted.status() == StatusCode::CONFLICT {
            let url = self.url("loyaltyObject", Some(&object.id));
            check(self.send(Method::PATCH, url, object).await?).await?;
            return Ok(Upserted::Updated);
        }
        check(inserted).await?;
        Ok(Upserted::Inserted)
    }

    /// Patches the object `id` with the fields of `patch`: `{"state": "INACTIVE"}` voids it,
    /// `{"loyaltyPoints": ..., "classId": ...}` moves the balance and the tier.
    pub async fn patch_object(
        &self,
        id: &str,
        patch: &serde_json::Value,
    ) -> Result<(), GoogleApiError> {
        let url = self.url("loyaltyObject", Some(id));
        check(self.send(Method::PATCH, url, patch).await?).await
    }

    /// `api_base/collection[/id]`, the id escaped as one path segment.
    fn url(&self, collection: &str, id: Option<&str>) -> Url {
        let mut url = self.api_base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .expect("checked in new: the API base can be a base");
            path.pop_if_empty().push(collection);
            if let Some(id) = id {
                path.push(id);
            }
        }
        url
    }

    /// Sends `body` with a token; on 401 drops that token and sends once more with a new one.
    async fn send<B>(&self, method: Method, url: Url, body: &B) -> Result<Response, GoogleApiError>
    where
        B: Serialize + ?Sized + Sync,
    {
        let mut renewed = false;
        loop {
            let token = self.access_token().await?;
            let response = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(&token)
                .json(body)
                .send()
                .await
                .map_err(|e| GoogleApiError::Unavailable {
                    status: None,
                    message: error_chain(&e),
                    retry_after: None,
                })?;
            if response.status() == StatusCode::UNAUTHORIZED && !renewed {
                renewed = true;
                self.forget_token(&token).await;
                continue;
            }
            return Ok(response);
        }
    }

    /// The cached token, or a new one. The lock is held while fetching, so concurrent calls
    /// wait for one request instead of each making their own.
    async fn access_token(&self) -> Result<String, GoogleApiError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.replace_at
        {
            return Ok(token.value.clone());
        }
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    /// Drops `token` if it is still the cached one (another call may have replaced it).
    async fn forget_token(&self, token: &str) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|t| t.value == token) {
            *cached = None;
        }
    }

    /// The signed JWT that asks for a token, valid for an hour from now.
    fn grant_assertion(&self) -> Result<String, GoogleApiError> {
        let iat = Timestamp::from(std::time::SystemTime::now()).millis() / 1000;
        let claims = GrantClaims {
            iss: &self.issuer_email,
            scope: WALLET_SCOPE,
            aud: &self.token_url,
            iat,
            exp: iat + ASSERTION_LIFETIME_SECS,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
            GoogleApiError::Setup(format!("\"private_key\" cannot sign a token request: {e}"))
        })
    }

    async fn fetch_token(&self) -> Result<AccessToken, GoogleApiError> {
        let assertion = self.grant_assertion()?;
        let asked_at = Instant::now();
        let failed = |status: Option<u16>, message: String, retry_after| GoogleApiError::Token {
            status,
            message,
            retry_after,
        };
        let response = self
            .http
            .post(&self.token_url)
            .form(&[
                ("grant_type", JWT_BEARER_GRANT),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| failed(None, error_chain(&e), None))?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| failed(None, error_chain(&e), None))?;
        if !(200..300).contains(&status) {
            return Err(failed(Some(status), error_message(&body), retry_after));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| failed(Some(status), format!("not a token answer: {e}"), None))?;
        Ok(AccessToken {
            value: answer.access_token,
            replace_at: asked_at
                + Duration::from_secs(answer.expires_in).saturating_sub(TOKEN_MARGIN),
        })
    }
}

/// Ok for a 2xx answer (its body read, so the connection can be reused), else the error.
async fn check(response: Response) -> Result<(), GoogleApiError> {
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let body = response.bytes().await;
    if (200..300).contains(&status) {
        return Ok(());
    }
    let message = match body {
        Ok(body) => error_message(&body),
        Err(e) => format!("(answer unreadable: {})", error_chain(&e)),
    };
    if retryable_status(status) {
        Err(GoogleApiError::Unavailable {
            status: Some(status),
            message,
            retry_after,
        })
    } else {
        Err(GoogleApiError::Refused { status, message })
    }
}

/// Google's own words from an error body: `{"error": {"message": ...}}` from the API,
/// `{"error": ..., "error_description": ...}` from the token endpoint, else the text itself.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ApiError {
        message: String,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ErrorBody {
        Api {
            error: ApiError,
        },
        OAuth {
            error: String,
            error_description: Option<String>,
        },
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody::Api { error }) => error.message,
        Ok(ErrorBody::OAuth {
            error,
            error_description: Some(description),
        }) => format!("{error}: {description}"),
        Ok(ErrorBody::OAuth { error, .. }) => error,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "(no message)".to_owned()
            } else {
                text.chars().take(300).collect()
            }
        }
    }
}

/// The `Retry-After` header: seconds, or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, time::OffsetDateTime::now_utc())
}

fn parse_retry_after(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
}

/// A reqwest error with its causes (the top level alone rarely says what went wrong).
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = time::macros::datetime!(2026-11-23 12:00:00 UTC);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 12:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Mon, 23 Nov 2026 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn error_messages_are_googles_own_words() {
        let api = br#"{"error": {"code": 400, "message": "Invalid resource id", "status": "INVALID_ARGUMENT"}}"#;
        assert_eq!(error_message(api), "Invalid resource id");
        let oauth = br#"{"error": "invalid_grant", "error_description": "Invalid JWT Signature."}"#;
        assert_eq!(
            error_message(oauth),
            "invalid_grant: Invalid JWT Signature."
        );
        assert_eq!(error_message(b"Service Unavailable"), "Service Unavailable");
        assert_eq!(error_message(b""), "(no message)");
    }

    #[test]
    fn retryable_means_network_429_or_5xx() {
        let unavailable = |status| GoogleApiError::Unavailable {
            status,
            message: String::new(),
            retry_after: None,
        };
        assert!(unavailable(None).is_retryable());
        assert!(unavailable(Some(503)).is_retryable());
        let refused = GoogleApiError::Refused {
            status: 404,
            message: String::new(),
        };
        assert!(!refused.is_retryable());
        let token = |status| GoogleApiError::Token {
            status,
            message: String::new(),
            retry_after: None,
        };
        assert!(token(None).is_retryable());
        assert!(token(Some(429)).is_retryable());
        assert!(!token(Some(400)).is_retryable());
    }
}
