//! The central server (axum + tokio): tills push their entries and member records and pull
//! everyone else's; the server keeps the one ordered, append-only set, on SQLite or PostgreSQL.
//! See [`crate::sync::protocol`] for the wire format.

pub mod acme;
pub mod activity;
pub mod audit;
pub mod config;
pub mod db;
mod error;
mod judge;
mod member_push;
pub mod partners;
pub mod passes;
pub mod pg_tls;
mod postgres;
mod report_keeper;
mod report_records;
mod sqlite;
pub mod tls;
pub mod validate;
pub mod verify;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{BytesRejection, FailedToBufferBody, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest as _, Sha256};

use crate::domain::{CardNumber, MemberId, MemberRecord, TerminalId, Timestamp};
use crate::sync::protocol::{
    ConfigQuery, DoubleSpend, MAX_BODY_BYTES, MAX_OWN_LIMIT, MAX_PULL_LIMIT, OwnQuery, PullQuery,
    PushRequest, SeedRequest, SeedResponse, TERMINAL_HEADER,
};
pub use db::{Auth, Db, DbError, TerminalRow};
pub use error::ApiError;
use validate::{BatchError, PushRefusal, RULE_BAD_BODY, check_push};

/// Shared by every request.
pub struct AppState {
    pub db: Db,
    /// Wallet passes, when the server holds wallet keys.
    pub passes: Option<Arc<passes::PassService>>,
    /// Stored pushes, as the background tasks watch them.
    pub activity: activity::Activity,
}

/// A new terminal token: `tpt_` and 52 base32 characters (256 random bits).
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "tpt_{}",
        data_encoding::BASE32_NOPAD
            .encode(&bytes)
            .to_ascii_lowercase()
    )
}

/// What the server stores instead of a token: its SHA-256, hex. Tokens carry 256 random bits,
/// so a fast hash is enough (no password stretching needed).
pub fn token_hash(token: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(token.trim().as_bytes()))
}

fn now() -> Timestamp {
    Timestamp::from(std::time::SystemTime::now())
}

/// The authenticated terminal of a request.
pub struct TerminalAuth(pub TerminalId);

impl FromRequestParts<Arc<AppState>> for TerminalAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let unauthorized = |m: &str| ApiError::Unauthorized(m.to_owned());
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("missing \"Authorization: Bearer <terminal token>\""))?;
        let terminal = parts
            .headers
            .get(TERMINAL_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 64)
            .ok_or_else(|| unauthorized(&format!("missing the {TERMINAL_HEADER} header")))?;
        let terminal = TerminalId(terminal.to_owned());
        if partners::reserved(&terminal) {
            return Err(ApiError::Forbidden(format!(
                "terminal id {terminal} is kept for the server's own entries"
            )));
        }
        match state.db.authenticate(&token_hash(token), &terminal).await? {
            Auth::Terminal(t) => Ok(TerminalAuth(t)),
            Auth::Unknown => Err(unauthorized("unknown terminal token")),
            Auth::Revoked => Err(unauthorized("this terminal's token was revoked")),
            Auth::BoundElsewhere(bound) => {
                tracing::warn!(
                    %terminal,
                    token_terminal = %bound,
                    "token used by another terminal"
                );
                Err(ApiError::Forbidden(
                    "this token belongs to another terminal".to_owned(),
                ))
            }
            Auth::TerminalTaken => Err(ApiError::Forbidden(
                "this till's id is registered under another token".to_owned(),
            )),
        }
    }
}

/// The routes, with the body limit and request logging.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/sync/push", post(push))
        .route("/v1/sync/pull", get(pull))
        .route("/v1/sync/config", get(config))
        .route("/v1/sync/own", get(own))
        .route("/v1/sync/seed", post(seed))
        .route("/v1/members/{id}/balance", get(balance))
        .route("/v1/members/by-card/{card}", get(card_lookup))
        .route("/v1/members/{id}/history", get(member_history))
        .route("/v1/double-spends", get(double_spends))
        .route("/v1/report", get(report))
        .merge(passes::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(refuse_declared_oversize))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// Refuses a body whose declared length is over the limit before reading any of it (the body
/// limit itself catches bodies that do not declare their length).
async fn refuse_declared_oversize(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return ApiError::PayloadTooLarge.into_response();
    }
    next.run(request).await
}

async fn log_request(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if status >= 500 {
        tracing::error!(%method, %path, status, ms, "request");
    } else if status >= 400 {
        tracing::warn!(%method, %path, status, ms, "request");
    } else {
        tracing::info!(%method, %path, status, ms, "request");
    }
    response
}

/// Unauthenticated, so it says only that the server and its database answer: nothing of the
/// volume or which database it is.
async fn health(State(state): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, ApiError> {
    state.db.health().await?;
    Ok(Json(serde_json::json!({ "status": "ok" })))
}

/// Parses a push body: the fast parser first; on failure, again with the path to the bad field
/// (`entries[3].points: invalid type ...`) for the error message.
fn parse_push(body: &[u8]) -> Result<PushRequest, ApiError> {
    serde_json::from_slice(body).map_err(|first| {
        let mut de = serde_json::Deserializer::from_slice(body);
        let message = match serde_path_to_error::deserialize::<_, PushRequest>(&mut de) {
            Err(e) if !e.path().to_string().is_empty() && e.path().to_string() != "." => {
                format!("{}: {}", e.path(), e.inner())
            }
            _ => first.to_string(),
        };
        let message = format!("bad push body: {message}");
        if first.is_data() {
            ApiError::Refused(PushRefusal::push(RULE_BAD_BODY, message))
        } else {
            ApiError::BadRequest(message)
        }
    })
}

/// A push; a refused one is recorded (after its rollback, in its own transaction) for the
/// audit, and a failure to record it changes nothing in the answer.
async fn push(
    State(state): State<Arc<AppState>>,
    TerminalAuth(terminal): TerminalAuth,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let at = now();
    let result = store_push(&state, &terminal, body, at).await;
    if let Err(ApiError::Refused(refusal)) = &result {
        tracing::warn!(
            terminal = %terminal,
            rule = refusal.rule,
            entry = ?refusal.entry_id,
            reason = %refusal,
            "push refused"
        );
        if let Err(e) = state.db.record_refusal(at, &terminal, refusal).await {
            tracing::error!(error = %e, "could not record a refused push");
        }
    }
    result
}

async fn store_push(
    state: &AppState,
    terminal: &TerminalId,
    body: Result<axum::body::Bytes, BytesRejection>,
    at: Timestamp,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| match r {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            ApiError::PayloadTooLarge
        }
        r => ApiError::BadRequest(r.body_text()),
    })?;
    let request = parse_push(&body)?;
    let batch = check_push(request, terminal, at).map_err(|e| match e {
        BatchError::TooLarge(m) => ApiError::TooManyRecords(m),
        BatchError::Refused(r) => ApiError::Refused(r),
    })?;
    let entries = batch.entries.len();
    let erased = batch.members.iter().any(|m| m.record.erased_at.is_some());
    let ack = state.db.push(batch, at).await?;
    if ack.inserted + ack.members > 0 {
        state.activity.stored();
    }
    if erased && let Err(e) = state.db.scrub_erased().await {
        // Stored already; the files are scrubbed by the next erasure or a restart's checkpoint.
        tracing::error!(error = %e, "scrubbing after an erasure");
    }
    tracing::info!(
        terminal = %terminal,
        entries,
        inserted = ack.inserted,
        duplicates = ack.duplicates,
        members = ack.members,
        server_seq = ack.server_seq,
        "push"
    );
    Ok(Json(ack).into_response())
}

async fn pull(
    State(state): State<Arc<AppState>>,
    TerminalAuth(terminal): TerminalAuth,
    query: Result<Query<PullQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    if q.after < 0 || q.limit == 0 {
        return Err(ApiError::BadRequest(
            "after must be >= 0 and limit >= 1".to_owned(),
        ));
    }
    let body = state
        .db
        .pull(&terminal, q.after, q.limit.min(MAX_PULL_LIMIT))
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The till's own entries back, for a till restored from an older copy.
async fn own(
    State(state): State<Arc<AppState>>,
    TerminalAuth(terminal): TerminalAuth,
    query: Result<Query<OwnQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    if q.after < 0 || q.limit == 0 {
        return Err(ApiError::BadRequest(
            "after must be >= 0 and limit >= 1".to_owned(),
        ));
    }
    let body = state
        .db
        .own(&terminal, q.after, q.limit.min(MAX_OWN_LIMIT))
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn config(
    State(state): State<Arc<AppState>>,
    TerminalAuth(terminal): TerminalAuth,
    query: Result<Query<ConfigQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    Ok(Json(state.db.config(Some(&terminal), q).await?).into_response())
}

/// `POST /v1/sync/seed`: a till with members of its own offers its member-code key; a server
/// that holds no members, entries or rotated keys yet takes it, so the cards and codes the
/// till gave out work across the chain. Any other server answers 409 and keeps its key.
async fn seed(
    State(state): State<Arc<AppState>>,
    TerminalAuth(terminal): TerminalAuth,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let request: SeedRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("bad seed request: {e}")))?;
    let key: [u8; 32] = data_encoding::BASE64
        .decode(request.code_key.as_bytes())
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| ApiError::BadRequest("the key is not 32 bytes of base64".into()))?;
    let answer = state.db.seed_key(key).await?.ok_or_else(|| {
        ApiError::Conflict(
            "the server already holds members, entries or keys of its own, so it keeps its \
             member-code key; a till with members of its own can only start a new chain"
                .into(),
        )
    })?;
    if answer == SeedResponse::Taken {
        tracing::info!(%terminal, "took the member-code key of the first till");
    }
    Ok(Json(answer).into_response())
}

async fn balance(
    State(state): State<Arc<AppState>>,
    TerminalAuth(_): TerminalAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let member = member_id(&id)?;
    match state.db.balance(member).await? {
        Some(b) => Ok(Json(b).into_response()),
        None => Err(unknown_member(member)),
    }
}

/// A member id from a path, or why it is not one.
fn member_id(id: &str) -> Result<MemberId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::BadRequest(format!("{id:?} is not a member id")))
}

fn unknown_member(member: MemberId) -> ApiError {
    ApiError::NotFound(format!("member {member} is not known to the server"))
}

/// `GET /v1/members/{id}/history`: the member's record and their entries from other tills,
/// for a till that has not pulled them all yet.
async fn member_history(
    State(state): State<Arc<AppState>>,
    TerminalAuth(terminal): TerminalAuth,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let member = member_id(&id)?;
    match state.db.member_history(member, &terminal).await? {
        Some(body) => Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response()),
        None => Err(unknown_member(member)),
    }
}

/// `GET /v1/members/by-card/{card}`: the member holding the card, for a till that has not
/// pulled them yet.
async fn card_lookup(
    State(state): State<Arc<AppState>>,
    TerminalAuth(_): TerminalAuth,
    Path(card): Path<String>,
) -> Result<Response, ApiError> {
    let card: CardNumber = card
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("{card:?} is not a card number: {e}")))?;
    Ok(Json(state.db.card_lookup(card.as_str()).await?).into_response())
}

async fn double_spends(
    State(state): State<Arc<AppState>>,
    TerminalAuth(_): TerminalAuth,
) -> Result<Response, ApiError> {
    Ok(Json(state.db.double_spends(500).await?).into_response())
}

/// `GET /v1/report?from=YYYY-MM-DD&to=YYYY-MM-DD`: the chain's measures (`to` excluded;
/// defaults: the 90 days up to today).
#[derive(serde::Deserialize)]
struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
}

async fn report(
    State(state): State<Arc<AppState>>,
    TerminalAuth(_): TerminalAuth,
    axum::extract::Query(q): axum::extract::Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let (from, to) = crate::domain::insights::period(q.from.as_deref(), q.to.as_deref(), now())
        .map_err(ApiError::BadRequest)?;
    Ok(Json(state.db.report(from, to).await?).into_response())
}

/// Serves on `listener` (plain TCP, or [`tls::TlsListener`]) until Ctrl-C or SIGTERM; with
/// `passes`, also issues wallet passes and keeps them live.
pub async fn serve<L>(
    listener: L,
    db: Db,
    passes: Option<Arc<passes::PassService>>,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let state = Arc::new(AppState {
        db,
        passes,
        activity: activity::Activity::default(),
    });
    report_keeper::spawn(Arc::clone(&state));
    if state.passes.is_some() {
        passes::updates::spawn(Arc::clone(&state));
    }
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

/// A double-spend row with its member's card and name.
pub(crate) fn double_spend(
    entry: uuid::Uuid,
    terminal: String,
    occurred_at: i64,
    points: i64,
    balance_after: i64,
    member_body: &str,
) -> Result<DoubleSpend, DbError> {
    let record: MemberRecord = serde_json::from_str(member_body).map_err(|e| {
        DbError::Internal(format!(
            "corrupt member record of double spend {entry}: {e}"
        ))
    })?;
    Ok(DoubleSpend {
        member_id: record.member.id,
        card: record.member.card,
        name: record.member.name,
        entry_id: crate::domain::EntryId(entry),
        terminal_id: TerminalId(terminal),
        occurred_at: Timestamp::from_millis(occurred_at),
        points,
        balance_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_member_record_that_does_not_parse_is_corrupt_data() {
        let err = double_spend(
            uuid::Uuid::now_v7(),
            "till-1".into(),
            0,
            -500,
            -100,
            "{\"member\":",
        )
        .expect_err("does not parse");
        assert!(matches!(err, DbError::Internal(_)), "{err}");
        assert_eq!(
            ApiError::from(err).status_code(),
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
