//! The pass routes: the link a till asks for, the page behind it, and Apple's PassKit web
//! service under `/passkit/v1` (so `webServiceURL` is `PUBLIC/passkit`).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::PassService;
use super::content::{content, current_card, token_ok};
use crate::domain::{MemberId, Timestamp};
use crate::pass::PassContent;
use crate::server::{ApiError, AppState, TerminalAuth, token_hash};
use crate::sync::protocol::{PassLinkRequest, PassLinkResponse};

/// The media type of a `.pkpass`.
pub const PKPASS: &str = "application/vnd.apple.pkpass";

/// The pass routes (they answer 404 on a server without wallet keys).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/passes/link", post(link))
        .route("/p/{token}", get(landing))
        .route("/p/{token}/pass.pkpass", get(link_pass))
        .route("/p/{token}/google", get(link_google))
        .route(
            "/passkit/v1/devices/{device}/registrations/{pass_type}/{serial}",
            post(register).delete(unregister),
        )
        .route(
            "/passkit/v1/devices/{device}/registrations/{pass_type}",
            get(updated),
        )
        .route("/passkit/v1/passes/{pass_type}/{serial}", get(latest))
        .route("/passkit/v1/log", post(log))
}

fn now() -> Timestamp {
    Timestamp::from(std::time::SystemTime::now())
}

fn service(state: &AppState) -> Result<&Arc<PassService>, ApiError> {
    state.passes.as_ref().ok_or_else(|| {
        ApiError::NotFound(
            "this server issues no wallet passes (start it with --wallet, see README)".into(),
        )
    })
}

/// `POST /v1/passes/link`: a new unguessable link to the member's pass (their card in use).
async fn link(
    State(state): State<Arc<AppState>>,
    TerminalAuth(terminal): TerminalAuth,
    body: Bytes,
) -> Result<Response, ApiError> {
    let passes = service(&state)?;
    let request: PassLinkRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("bad pass link request: {e}")))?;
    let at = now();
    let member = request.member_id;
    let source = state.db.pass_source(member).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "member {member} is not on the server yet: sync this till, then try again"
        ))
    })?;
    let serial = current_card(&source)?;
    let pass = content(&passes.programs, &source, &serial, at)?;
    if pass.voided {
        return Err(ApiError::NotFound(format!(
            "member {member} was erased; no pass can be issued"
        )));
    }
    state
        .db
        .pass_issue(
            serial.clone(),
            member,
            super::shown(&pass),
            passes.setup.google.is_some(),
            at,
        )
        .await?;
    let token = crate::server::new_token().replacen("tpt_", "", 1);
    state
        .db
        .pass_link_add(token_hash(&token), member, at)
        .await?;
    tracing::info!(%terminal, %member, %serial, "pass link issued");
    Ok(axum::Json(PassLinkResponse {
        url: format!("{}/p/{token}", passes.settings.public_url),
        serial,
        demo: passes.setup.demo,
    })
    .into_response())
}

/// The member behind a live link, and their pass content now.
async fn linked(state: &AppState, token: &str) -> Result<(MemberId, PassContent), ApiError> {
    let gone = || {
        ApiError::NotFound(
            "this pass link is not valid (any more): ask at the till for a new one".into(),
        )
    };
    let member = state
        .db
        .pass_link_member(token_hash(token))
        .await?
        .ok_or_else(gone)?;
    let source = state.db.pass_source(member).await?.ok_or_else(gone)?;
    let serial = current_card(&source)?;
    let pass = content(&service(state)?.programs, &source, &serial, now())?;
    if pass.voided {
        return Err(gone());
    }
    Ok((member, pass))
}

#[derive(PartialEq, Eq)]
enum Phone {
    Apple,
    Android,
    Other,
}

fn phone(headers: &HeaderMap) -> Phone {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ["iPhone", "iPad", "iPod"].iter().any(|d| agent.contains(d)) {
        Phone::Apple
    } else if agent.contains("Android") {
        Phone::Android
    } else {
        Phone::Other
    }
}

/// `GET /p/{token}`: the pass for an iPhone, the Google save link for Android, else a page
/// with both.
async fn landing(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let passes = service(&state)?;
    let (member, pass) = linked(&state, &token).await?;
    match phone(&headers) {
        Phone::Apple if passes.setup.apple.is_some() => {
            pkpass(&state, passes, member, pass, &headers).await
        }
        Phone::Android if passes.setup.google.is_some() => google(passes, &pass).await,
        _ => Ok(page(passes, &pass, &token)),
    }
}

async fn link_pass(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let passes = service(&state)?;
    let (member, pass) = linked(&state, &token).await?;
    pkpass(&state, passes, member, pass, &headers).await
}

async fn link_google(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let passes = service(&state)?;
    let (_, pass) = linked(&state, &token).await?;
    google(passes, &pass).await
}

/// The save link: a short one naming the object inserted at Google just now, or, when Google's
/// API is not configured or not answering, one carrying the whole object.
async fn google(passes: &PassService, pass: &PassContent) -> Result<Response, ApiError> {
    let maker = passes
        .setup
        .google
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("Google Wallet passes are not set up here".into()))?;
    let url = match passes.update_google(pass).await {
        Ok(true) => maker.reference_save_url(&maker.object_reference(&pass.pass()), now()),
        Ok(false) => maker.save_url(&pass.pass()),
        Err(e) => {
            tracing::warn!(error = %e, "Google Wallet API; the save link carries the object");
            maker.save_url(&pass.pass())
        }
    }
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Redirect::to(&url).into_response())
}

/// The signed pass (signing runs off the async threads), with its Last-Modified.
async fn pkpass(
    state: &AppState,
    passes: &Arc<PassService>,
    member: MemberId,
    pass: PassContent,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let serial = pass.member.card.as_str().to_owned();
    let row = state
        .db
        .pass_issue(
            serial,
            member,
            super::shown(&pass),
            passes.setup.google.is_some(),
            now(),
        )
        .await?;
    signed(passes, pass, row.updated_at, headers).await
}

async fn signed(
    passes: &Arc<PassService>,
    pass: PassContent,
    updated_at: i64,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let modified = UNIX_EPOCH + Duration::from_secs(u64::try_from(updated_at / 1000).unwrap_or(0));
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let last_modified = httpdate::fmt_http_date(modified);
    if since.is_some_and(|s| modified <= s) {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::LAST_MODIFIED, last_modified)],
        )
            .into_response());
    }
    let service = Arc::clone(passes);
    let bytes = tokio::task::spawn_blocking(move || {
        let maker =
            service.setup.apple.as_ref().ok_or_else(|| {
                ApiError::NotFound("Apple Wallet passes are not set up here".into())
            })?;
        maker
            .build(&pass.pass())
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("signing a pass: {e}")))??;
    Ok((
        [
            (header::CONTENT_TYPE, PKPASS.to_owned()),
            (header::LAST_MODIFIED, last_modified),
            (header::CACHE_CONTROL, "no-cache".to_owned()),
        ],
        bytes,
    )
        .into_response())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The page for a computer or an unknown phone: both buttons.
fn page(passes: &PassService, pass: &PassContent, token: &str) -> Response {
    let program = escape(&pass.program.name);
    let name = escape(&pass.member.name);
    let mut buttons = String::new();
    if passes.setup.apple.is_some() {
        buttons.push_str(&format!(
            r#"<a class="button apple" href="/p/{token}/pass.pkpass">Add to Apple Wallet</a>"#
        ));
    }
    if passes.setup.google.is_some() {
        buttons.push_str(&format!(
            r#"<a class="button google" href="/p/{token}/google">Add to Google Wallet</a>"#
        ));
    }
    let demo = if passes.setup.demo {
        "<p class=\"demo\">Demo signing: no phone will install this pass.</p>"
    } else {
        ""
    };
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{program}: your card</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 28rem; margin: 3rem auto; padding: 0 1rem; text-align: center; }}
.button {{ display: block; margin: 1rem 0; padding: 1rem; border-radius: .75rem; background: #111; color: #fff; text-decoration: none; font-size: 1.2rem; }}
.google {{ background: #1a73e8; }}
.demo {{ color: #a00; }}
</style></head>
<body><h1>{program}</h1><p>{name}, add your card to your phone's wallet. Its balance stays up to date.</p>
{buttons}{demo}</body></html>"#
    ))
    .into_response()
}

/// The pass secret of `Authorization: ApplePass <token>`.
fn apple_pass_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("ApplePass ")
        .map(str::trim)
}

/// The pass `serial` of our pass type and its source, when the request holds its secret.
enum Checked {
    Pass(
        crate::server::passes::records::PassRow,
        super::records::PassSource,
    ),
    Status(StatusCode),
}

async fn check(
    state: &AppState,
    pass_type: &str,
    serial: &str,
    headers: &HeaderMap,
) -> Result<Checked, ApiError> {
    let passes = service(state)?;
    if passes.pass_type() != Some(pass_type) {
        return Ok(Checked::Status(StatusCode::NOT_FOUND));
    }
    let Some(row) = state.db.pass_row(serial.to_owned()).await? else {
        return Ok(Checked::Status(StatusCode::NOT_FOUND));
    };
    let Some(source) = state.db.pass_source(row.member_id).await? else {
        return Ok(Checked::Status(StatusCode::NOT_FOUND));
    };
    match apple_pass_token(headers) {
        Some(token) if token_ok(&source, serial, token) => Ok(Checked::Pass(row, source)),
        _ => Ok(Checked::Status(StatusCode::UNAUTHORIZED)),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Registration {
    push_token: String,
}

/// Register a device for a pass's updates: 201 new, 200 known.
async fn register(
    State(state): State<Arc<AppState>>,
    Path((device, pass_type, serial)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Checked::Status(status) = check(&state, &pass_type, &serial, &headers).await? {
        return Ok(status.into_response());
    }
    let registration: Registration = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("bad registration body: {e}")))?;
    let push_token = registration.push_token.trim().to_owned();
    if device.len() > 200 || push_token.is_empty() || push_token.len() > 200 {
        return Err(ApiError::BadRequest(
            "device id and push token must be 1 to 200 characters".into(),
        ));
    }
    let created = state
        .db
        .pass_register(device, pass_type, serial, push_token, now())
        .await?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
    .into_response())
}

/// Unregister a device from a pass: 200, or 404 if it was not registered.
async fn unregister(
    State(state): State<Arc<AppState>>,
    Path((device, pass_type, serial)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Checked::Status(status) = check(&state, &pass_type, &serial, &headers).await? {
        return Ok(status.into_response());
    }
    let removed = state.db.pass_unregister(device, pass_type, serial).await?;
    Ok(if removed {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
    .into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdatedQuery {
    passes_updated_since: Option<String>,
}

/// The serial numbers of the device's passes updated since the tag: 200, or 204 for none.
async fn updated(
    State(state): State<Arc<AppState>>,
    Path((device, pass_type)): Path<(String, String)>,
    Query(q): Query<UpdatedQuery>,
) -> Result<Response, ApiError> {
    let passes = service(&state)?;
    if passes.pass_type() != Some(pass_type.as_str()) {
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    let since = q
        .passes_updated_since
        .as_deref()
        .and_then(|t| t.trim().parse::<i64>().ok());
    let updated = state.db.pass_updated(device, pass_type, since).await?;
    let Some(last) = updated.iter().map(|(_, at)| *at).max() else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    Ok(axum::Json(serde_json::json!({
        "serialNumbers": updated.into_iter().map(|(s, _)| s).collect::<Vec<_>>(),
        "lastUpdated": last.to_string(),
    }))
    .into_response())
}

/// The latest version of a pass: 200 with the signed pass, 304 if not modified since.
async fn latest(
    State(state): State<Arc<AppState>>,
    Path((pass_type, serial)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (row, source) = match check(&state, &pass_type, &serial, &headers).await? {
        Checked::Pass(row, source) => (row, source),
        Checked::Status(status) => return Ok(status.into_response()),
    };
    let passes = service(&state)?;
    let pass = content(&passes.programs, &source, &serial, now())?;
    signed(passes, pass, row.updated_at, &headers).await
}

#[derive(Deserialize)]
struct Logs {
    logs: Vec<String>,
}

/// Devices report web-service errors here; they go to the server's log.
async fn log(body: Bytes) -> Result<Response, ApiError> {
    let logs: Logs = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("bad log body: {e}")))?;
    for message in logs.logs.iter().take(50) {
        let message: String = message.chars().take(1000).collect();
        tracing::warn!(%message, "wallet device log");
    }
    Ok(StatusCode::OK.into_response())
}
