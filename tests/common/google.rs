//! A stand-in for Google on 127.0.0.1: the OAuth token endpoint (it verifies the service
//! account's signed JWT with the public key) and the Wallet Objects API (bearer token checked,
//! every body held to Google's discovery document, ids and review rules as Google keeps them).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use tillpass::domain::Timestamp;
use tillpass::pass::demo::{rsa_key, service_account_json};
use tillpass::pass::google::ServiceAccountKey;
use tillpass::server::passes::google::{
    GoogleEndpoints, GoogleWalletApi, JWT_BEARER_GRANT, WALLET_SCOPE,
};

use super::discovery;

pub const ISSUER: &str = "3388000000012345678";
pub const EMAIL: &str = "wallet@tillpass-test.iam.gserviceaccount.com";

/// The service account's key pair `(private PEM, public PEM)`, made once for every test.
pub fn key_pair() -> &'static (String, String) {
    static KEY: OnceLock<(String, String)> = OnceLock::new();
    KEY.get_or_init(|| rsa_key().expect("RSA key"))
}

pub fn service_account(private_pem: &str) -> ServiceAccountKey {
    serde_json::from_str(&service_account_json(EMAIL, private_pem)).expect("key file")
}

/// What the stand-in holds and has seen.
pub struct Google {
    pub public_key: DecodingKey,
    pub token_url: String,
    /// `expires_in` of the tokens it issues.
    pub token_lifetime: u64,
    pub tokens_issued: usize,
    pub valid_tokens: BTreeSet<String>,
    /// Answers 401 to every API call, whatever its token.
    pub refuse_every_token: bool,
    /// Every API call, `METHOD path`, in order (refused ones too).
    pub calls: Vec<String>,
    pub classes: BTreeMap<String, Value>,
    pub objects: BTreeMap<String, Value>,
    /// Answers given instead of handling the next API calls: status, Retry-After, message.
    pub scripted: VecDeque<(StatusCode, Option<&'static str>, &'static str)>,
}

pub type Shared = Arc<Mutex<Google>>;

/// A stand-in for Google on 127.0.0.1: `/token` and `/walletobjects/v1/...`.
pub struct StandIn {
    pub state: Shared,
    pub endpoints: GoogleEndpoints,
}

impl StandIn {
    /// Trusts `public_pem` as the service account's key.
    pub async fn start(public_pem: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let endpoints = GoogleEndpoints {
            token_url: format!("http://{addr}/token"),
            api_base: format!("http://{addr}/walletobjects/v1"),
        };
        let state = Arc::new(Mutex::new(Google {
            public_key: DecodingKey::from_rsa_pem(public_pem.as_bytes()).expect("public key"),
            token_url: endpoints.token_url.clone(),
            token_lifetime: 3600,
            tokens_issued: 0,
            valid_tokens: BTreeSet::new(),
            refuse_every_token: false,
            calls: Vec::new(),
            classes: BTreeMap::new(),
            objects: BTreeMap::new(),
            scripted: VecDeque::new(),
        }));
        let app = Router::new()
            .route("/token", post(token))
            .route("/walletobjects/v1/{collection}", post(insert))
            .route(
                "/walletobjects/v1/{collection}/{id}",
                axum::routing::put(update).patch(patch),
            )
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        StandIn { state, endpoints }
    }

    pub fn google(&self) -> MutexGuard<'_, Google> {
        self.state.lock().expect("stand-in state")
    }

    /// A client of this stand-in signing with `private_pem`.
    pub fn client_signing_with(&self, private_pem: &str) -> GoogleWalletApi {
        let _ = rustls::crypto::ring::default_provider().install_default();
        GoogleWalletApi::new(
            service_account(private_pem),
            self.endpoints.clone(),
            reqwest::Client::new(),
        )
        .expect("client")
    }

    /// A client with the service account's own key.
    pub fn client(&self) -> GoogleWalletApi {
        self.client_signing_with(&key_pair().0)
    }

    pub fn object(&self, id: &str) -> Value {
        self.google()
            .objects
            .get(id)
            .cloned()
            .expect("stored object")
    }
}

/// The claims of the service account's token request, as Google reads them.
#[derive(Debug, Deserialize)]
pub struct GrantClaims {
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
}

pub fn oauth_error(error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// Google's token endpoint: a JWT-bearer grant signed by the service account's key, for the
/// wallet scope, addressed to this endpoint, valid for at most an hour.
pub async fn token(State(state): State<Shared>, body: Bytes) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<BTreeMap<String, String>>(&body) else {
        return oauth_error("invalid_request", "not a form");
    };
    if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER_GRANT) {
        return oauth_error("unsupported_grant_type", "Invalid grant_type");
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    let mut google = state.lock().expect("stand-in state");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[&google.token_url]);
    validation.set_issuer(&[EMAIL]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let claims =
        match jsonwebtoken::decode::<GrantClaims>(assertion, &google.public_key, &validation) {
            Ok(token) => token.claims,
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
                return oauth_error("invalid_grant", "Invalid JWT Signature.");
            }
            Err(e) => return oauth_error("invalid_grant", &e.to_string()),
        };
    let now = Timestamp::from(std::time::SystemTime::now()).millis() / 1000;
    if claims.scope != WALLET_SCOPE {
        return oauth_error("invalid_scope", "Invalid OAuth scope.");
    }
    if claims.exp - claims.iat > 3600 || (claims.iat - now).abs() > 300 {
        return oauth_error("invalid_grant", "Invalid JWT: iat/exp out of range.");
    }
    google.tokens_issued += 1;
    let token = format!("ya29.stand-in-{}", google.tokens_issued);
    google.valid_tokens.insert(token.clone());
    axum::Json(json!({
        "access_token": token,
        "expires_in": google.token_lifetime,
        "token_type": "Bearer",
    }))
    .into_response()
}

/// An error answer of the Wallet Objects API.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<&'static str>,
}

/// Google's error body: `{"error": {"code", "message", "status"}}`.
impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "code": self.status.as_u16(),
            "message": self.message,
            "status": self.status.canonical_reason().unwrap_or_default(),
        }});
        let mut answer = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            answer.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(seconds),
            );
        }
        answer
    }
}

pub fn refusal(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
        retry_after: None,
    }
}

pub fn bad(message: impl Into<String>) -> Refusal {
    refusal(StatusCode::BAD_REQUEST, message)
}

/// Records the call, checks the bearer token and plays a scripted answer if one is waiting.
pub fn admit(google: &mut Google, headers: &HeaderMap, call: String) -> Result<(), Refusal> {
    google.calls.push(call);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if google.refuse_every_token || !token.is_some_and(|t| google.valid_tokens.contains(t)) {
        return Err(refusal(
            StatusCode::UNAUTHORIZED,
            "Request had invalid authentication credentials.",
        ));
    }
    if let Some((status, retry_after, message)) = google.scripted.pop_front() {
        return Err(Refusal {
            status,
            message: message.to_owned(),
            retry_after,
        });
    }
    Ok(())
}

/// A JSON object body that the discovery document documents (whole unless `partial`).
pub fn documented(collection: &str, body: &Bytes, partial: bool) -> Result<Value, Refusal> {
    let (schema, required): (&str, &[&str]) = match collection {
        "loyaltyClass" => ("LoyaltyClass", &discovery::LOYALTY_CLASS_REQUIRED),
        "loyaltyObject" => ("LoyaltyObject", &discovery::LOYALTY_OBJECT_REQUIRED),
        other => return Err(refusal(StatusCode::NOT_FOUND, format!("no {other}"))),
    };
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("Invalid JSON payload: {e}")))?;
    discovery::check_schema(schema, &value).map_err(bad)?;
    if !partial {
        discovery::check_required(schema, required, &value).map_err(bad)?;
    }
    Ok(value)
}

/// Google's rules beyond the schema: ids under the issuer, settable review statuses, objects of
/// an existing class that has left draft.
pub fn check_rules(
    google: &Google,
    collection: &str,
    value: &Value,
    stored: Option<&Value>,
) -> Result<(), Refusal> {
    if let Some(id) = value["id"].as_str()
        && !id.starts_with(&format!("{ISSUER}."))
    {
        return Err(bad(format!("{id}: not an id of issuer {ISSUER}")));
    }
    if collection == "loyaltyClass"
        && let Some(status) = value["reviewStatus"].as_str()
    {
        if !matches!(status, "DRAFT" | "UNDER_REVIEW") {
            return Err(bad(format!(
                "reviewStatus {status} cannot be set by an issuer"
            )));
        }
        if status == "DRAFT" && stored.is_some_and(|s| s["reviewStatus"] != "DRAFT") {
            return Err(bad("a class that has left DRAFT cannot go back"));
        }
    }
    if collection == "loyaltyObject"
        && let Some(class_id) = value["classId"].as_str()
    {
        match google.classes.get(class_id) {
            None => {
                return Err(refusal(
                    StatusCode::NOT_FOUND,
                    format!("class {class_id} not found"),
                ));
            }
            Some(class) if class["reviewStatus"] == "DRAFT" => {
                return Err(bad(format!("class {class_id} is a draft")));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

impl Google {
    pub fn stored(&self, collection: &str, id: &str) -> Option<&Value> {
        if collection == "loyaltyClass" {
            self.classes.get(id)
        } else {
            self.objects.get(id)
        }
    }

    /// Stores `value`; a class under review is approved at once.
    pub fn store(&mut self, collection: &str, id: String, mut value: Value) -> Value {
        if collection == "loyaltyClass" {
            if value["reviewStatus"] == "UNDER_REVIEW" {
                value["reviewStatus"] = json!("APPROVED");
            }
            self.classes.insert(id, value.clone());
        } else {
            self.objects.insert(id, value.clone());
        }
        value
    }

    /// `POST {collection}`: insert; 409 when the id exists.
    pub fn insert(
        &mut self,
        collection: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Value, Refusal> {
        admit(self, headers, format!("POST {collection}"))?;
        let value = documented(collection, body, false)?;
        let id = value["id"].as_str().unwrap_or_default().to_owned();
        if self.stored(collection, &id).is_some() {
            return Err(refusal(
                StatusCode::CONFLICT,
                format!("Resource {id} already exists."),
            ));
        }
        check_rules(self, collection, &value, None)?;
        Ok(self.store(collection, id, value))
    }

    /// `PUT {collection}/{id}`: replaces a resource that exists.
    pub fn update(
        &mut self,
        collection: &str,
        id: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Value, Refusal> {
        admit(self, headers, format!("PUT {collection}/{id}"))?;
        let value = documented(collection, body, false)?;
        let old = self
            .stored(collection, id)
            .ok_or_else(|| refusal(StatusCode::NOT_FOUND, format!("{id} not found")))?;
        if value["id"] != id {
            return Err(bad("the body's id is not the path's"));
        }
        check_rules(self, collection, &value, Some(old))?;
        Ok(self.store(collection, id.to_owned(), value))
    }

    /// `PATCH {collection}/{id}`: the body's fields replace the stored ones.
    pub fn patch(
        &mut self,
        collection: &str,
        id: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Value, Refusal> {
        admit(self, headers, format!("PATCH {collection}/{id}"))?;
        let value = documented(collection, body, true)?;
        let old = self
            .stored(collection, id)
            .ok_or_else(|| refusal(StatusCode::NOT_FOUND, format!("{id} not found")))?;
        if !value["id"].is_null() && value["id"] != id {
            return Err(bad("the body's id is not the path's"));
        }
        check_rules(self, collection, &value, Some(old))?;
        let mut merged = old.clone();
        for (key, field) in value.as_object().into_iter().flatten() {
            merged[key] = field.clone();
        }
        Ok(self.store(collection, id.to_owned(), merged))
    }
}

pub fn answer(result: Result<Value, Refusal>) -> Response {
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

pub async fn insert(
    State(state): State<Shared>,
    Path(collection): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut google = state.lock().expect("stand-in state");
    answer(google.insert(&collection, &headers, &body))
}

pub async fn update(
    State(state): State<Shared>,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut google = state.lock().expect("stand-in state");
    answer(google.update(&collection, &id, &headers, &body))
}

pub async fn patch(
    State(state): State<Shared>,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut google = state.lock().expect("stand-in state");
    answer(google.patch(&collection, &id, &headers, &body))
}
