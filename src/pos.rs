//! The till's local integration API: the point-of-sale system on the same machine attaches a
//! basket to the member on screen, reads the explained points preview and commits the sale,
//! over HTTP on the loopback address with a bearer token (`docs/integration-api.md`).
//!
//! This module owns the HTTP side only. Each call becomes a [`PosCall`] handed to the till app,
//! which answers it from the frame (the member on screen, the preview) or once its store worker
//! has written the sale; the app's state changes in one place, whoever asked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{KeyInit as _, Mac as _};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::domain::basket::{Basket, SaleLine};
use crate::domain::quote::Quote;

/// How long a call waits for the till to answer before it is told the till is busy.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// The address the till listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7411";

/// What the point-of-sale system asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PosRequest {
    /// The member on screen.
    Member,
    /// Attach a basket to the member on screen (replacing any) and preview its points.
    Attach(Vec<SaleLine>),
    /// Record the attached basket as the member's sale.
    Commit,
    /// Drop the attached basket.
    Clear,
}

/// The member on screen, as the point-of-sale system sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnScreen {
    pub member_id: String,
    pub card: String,
    pub name: String,
    pub tier: String,
    pub balance: i64,
    /// Offers the member may use now (the POS may add the reward line for one).
    pub offers: Vec<OfferOnScreen>,
    /// Stamps held by stamp card id.
    pub stamps: std::collections::BTreeMap<String, i64>,
    /// Badge ids held.
    pub badges: Vec<String>,
}

/// An open offer of the member on screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OfferOnScreen {
    pub id: String,
    pub name: String,
    /// Usable until (UTC, RFC 3339).
    pub expires_at: String,
}

/// A recorded sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Committed {
    pub entry_id: String,
    pub points: i64,
    pub amount_minor: i64,
    /// The member's balance after the sale.
    pub balance: i64,
}

/// The till's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PosAnswer {
    Member(OnScreen),
    Quote(Quote),
    Committed(Committed),
    Cleared,
    /// No member on screen.
    NoMember,
    /// Nothing attached to commit.
    NoBasket,
    /// The program refuses the basket or the sale, with the reason.
    Refused(String),
}

/// One call waiting for the till's answer.
#[derive(Debug)]
pub struct PosCall {
    pub request: PosRequest,
    pub answer: oneshot::Sender<PosAnswer>,
}

/// The running API; dropping it stops the listener.
#[derive(Debug)]
pub struct PosApi {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl PosApi {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for PosApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum PosError {
    #[error("the integration API listens on this machine only; {0} is not a loopback address")]
    NotLoopback(SocketAddr),
    #[error("the integration API could not listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

struct ApiState {
    /// HMAC of a fixed text under the token: a presented token is checked by comparing tags
    /// in constant time.
    token_tag: Vec<u8>,
    calls: Sender<PosCall>,
    wake: Box<dyn Fn() + Send + Sync>,
}

fn token_tag(token: &str) -> Vec<u8> {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"tillpass-pos-token");
    mac.finalize().into_bytes().to_vec()
}

fn token_matches(expected_tag: &[u8], presented: &str) -> bool {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(presented.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"tillpass-pos-token");
    mac.verify_slice(expected_tag).is_ok()
}

/// Starts the API on `addr` (a loopback address; port 0 picks one) on a thread of its own.
/// Calls go to `calls`; `wake` is run after each so the till app looks at them at once.
pub fn start(
    addr: SocketAddr,
    token: &str,
    calls: Sender<PosCall>,
    wake: impl Fn() + Send + Sync + 'static,
) -> Result<PosApi, PosError> {
    if !addr.ip().is_loopback() {
        return Err(PosError::NotLoopback(addr));
    }
    let listen_error = |source| PosError::Listen { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(listen_error)?;
    listener.set_nonblocking(true).map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    let state = Arc::new(ApiState {
        token_tag: token_tag(token),
        calls,
        wake: Box::new(wake),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(listen_error)?;
    std::thread::Builder::new()
        .name("pos-api".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let served = axum::serve(listener, router(state))
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
                if let Err(e) = served {
                    tracing::warn!("integration API stopped: {e}");
                }
            });
        })
        .map_err(listen_error)?;
    Ok(PosApi {
        addr: bound,
        stop: Some(stop),
    })
}

fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/v1/member", get(member))
        .route("/v1/basket", post(attach).delete(clear))
        .route("/v1/basket/commit", post(commit))
        .layer(middleware::from_fn_with_state(state.clone(), authorise))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn authorise(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if token_matches(&state.token_tag, token.trim()) => next.run(request).await,
        Some(_) => error(
            StatusCode::UNAUTHORIZED,
            "wrong token (see `tillpass pos-token`)",
        ),
        None => error(
            StatusCode::UNAUTHORIZED,
            "missing \"Authorization: Bearer <token>\" (see `tillpass pos-token`)",
        ),
    }
}

/// Hands `request` to the till and waits for its answer.
async fn ask(state: &ApiState, request: PosRequest) -> Result<PosAnswer, Response> {
    let (answer, answered) = oneshot::channel();
    let busy = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the till did not answer; is it open?",
        )
    };
    state
        .calls
        .send(PosCall { request, answer })
        .map_err(|_| busy())?;
    (state.wake)();
    match tokio::time::timeout(ANSWER_WITHIN, answered).await {
        Ok(Ok(answer)) => Ok(answer),
        _ => Err(busy()),
    }
}

fn respond(answer: PosAnswer) -> Response {
    match answer {
        PosAnswer::Member(m) => Json(m).into_response(),
        PosAnswer::Quote(q) => Json(q).into_response(),
        PosAnswer::Committed(c) => Json(c).into_response(),
        PosAnswer::Cleared => StatusCode::NO_CONTENT.into_response(),
        PosAnswer::NoMember => error(
            StatusCode::NOT_FOUND,
            "no member on screen: scan their card first",
        ),
        PosAnswer::NoBasket => error(StatusCode::CONFLICT, "no basket attached to commit"),
        PosAnswer::Refused(reason) => error(StatusCode::UNPROCESSABLE_ENTITY, reason),
    }
}

async fn member(State(state): State<Arc<ApiState>>) -> Response {
    ask(&state, PosRequest::Member)
        .await
        .map_or_else(|e| e, respond)
}

async fn attach(
    State(state): State<Arc<ApiState>>,
    body: Result<Json<Basket>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match body {
        Ok(Json(basket)) => ask(&state, PosRequest::Attach(basket.lines))
            .await
            .map_or_else(|e| e, respond),
        Err(rejection) => error(StatusCode::BAD_REQUEST, rejection.body_text()),
    }
}

async fn commit(State(state): State<Arc<ApiState>>) -> Response {
    ask(&state, PosRequest::Commit)
        .await
        .map_or_else(|e| e, respond)
}

async fn clear(State(state): State<Arc<ApiState>>) -> Response {
    ask(&state, PosRequest::Clear)
        .await
        .map_or_else(|e| e, respond)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_compared_by_tag() {
        let tag = token_tag("s3cret-token");
        assert!(token_matches(&tag, "s3cret-token"));
        assert!(!token_matches(&tag, "s3cret-tokem"));
        assert!(!token_matches(&tag, ""));
    }

    #[test]
    fn only_loopback_addresses_are_served() {
        let (calls, _) = std::sync::mpsc::channel();
        let open = "0.0.0.0:0".parse().expect("addr");
        assert!(matches!(
            start(open, "t", calls, || {}),
            Err(PosError::NotLoopback(_))
        ));
    }
}
