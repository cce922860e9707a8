//! The Google Wallet REST client against local stand-ins written here: an OAuth 2.0 token
//! endpoint that verifies the service account's JWT with its public key and issues tokens, and a
//! Wallet Objects endpoint that checks the bearer token, holds every body to Google's discovery
//! document, keeps classes and objects, answers 409 to a second insert and implements PATCH.

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::discovery;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use tillpass::domain::{CardNumber, Member, MemberId, MemberSummary, Program, Timestamp};
use tillpass::pass::PassMember;
use tillpass::pass::demo::{rsa_key, service_account_json};
use tillpass::pass::google::{GoogleSettings, LoyaltyClass, LoyaltyObject, ServiceAccountKey};
use tillpass::server::passes::google::{
    GoogleApiError, GoogleEndpoints, GoogleWalletApi, JWT_BEARER_GRANT, PRODUCTION_API_BASE,
    Upserted, WALLET_SCOPE,
};

const ISSUER: &str = "3388000000012345678";
const EMAIL: &str = "wallet@tillpass-test.iam.gserviceaccount.com";

/// The service account's key pair `(private PEM, public PEM)`, made once for every test.
fn key_pair() -> &'static (String, String) {
    static KEY: OnceLock<(String, String)> = OnceLock::new();
    KEY.get_or_init(|| rsa_key().expect("RSA key"))
}

fn service_account(private_pem: &str) -> ServiceAccountKey {
    serde_json::from_str(&service_account_json(EMAIL, private_pem)).expect("key file")
}

/// What the stand-in holds and has seen.
struct Google {
    public_key: DecodingKey,
    token_url: String,
    /// `expires_in` of the tokens it issues.
    token_lifetime: u64,
    tokens_issued: usize,
    valid_tokens: BTreeSet<String>,
    /// Answers 401 to every API call, whatever its token.
    refuse_every_token: bool,
    /// Every API call, `METHOD path`, in order (refused ones too).
    calls: Vec<String>,
    classes: BTreeMap<String, Value>,
    objects: BTreeMap<String, Value>,
    /// Answers given instead of handling the next API calls: status, Retry-After, message.
    scripted: VecDeque<(StatusCode, Option<&'static str>, &'static str)>,
}

type Shared = Arc<Mutex<Google>>;

/// A stand-in for Google on 127.0.0.1: `/token` and `/walletobjects/v1/...`.
struct StandIn {
    state: Shared,
    endpoints: GoogleEndpoints,
}

impl StandIn {
    /// Trusts `public_pem` as the service account's key.
    async fn start(public_pem: &str) -> Self {
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

    fn google(&self) -> MutexGuard<'_, Google> {
        self.state.lock().expect("stand-in state")
    }

    /// A client of this stand-in signing with `private_pem`.
    fn client_signing_with(&self, private_pem: &str) -> GoogleWalletApi {
        let _ = rustls::crypto::ring::default_provider().install_default();
        GoogleWalletApi::new(
            service_account(private_pem),
            self.endpoints.clone(),
            reqwest::Client::new(),
        )
        .expect("client")
    }

    /// A client with the service account's own key.
    fn client(&self) -> GoogleWalletApi {
        self.client_signing_with(&key_pair().0)
    }

    fn object(&self, id: &str) -> Value {
        self.google()
            .objects
            .get(id)
            .cloned()
            .expect("stored object")
    }
}

/// The claims of the service account's token request, as Google reads them.
#[derive(Debug, Deserialize)]
struct GrantClaims {
    scope: String,
    iat: i64,
    exp: i64,
}

fn oauth_error(error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// Google's token endpoint: a JWT-bearer grant signed by the service account's key, for the
/// wallet scope, addressed to this endpoint, valid for at most an hour.
async fn token(State(state): State<Shared>, body: Bytes) -> Response {
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
struct Refusal {
    status: StatusCode,
    message: String,
    retry_after: Option<&'static str>,
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

fn refusal(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
        retry_after: None,
    }
}

fn bad(message: impl Into<String>) -> Refusal {
    refusal(StatusCode::BAD_REQUEST, message)
}

/// Records the call, checks the bearer token and plays a scripted answer if one is waiting.
fn admit(google: &mut Google, headers: &HeaderMap, call: String) -> Result<(), Refusal> {
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
fn documented(collection: &str, body: &Bytes, partial: bool) -> Result<Value, Refusal> {
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
fn check_rules(
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
    fn stored(&self, collection: &str, id: &str) -> Option<&Value> {
        if collection == "loyaltyClass" {
            self.classes.get(id)
        } else {
            self.objects.get(id)
        }
    }

    /// Stores `value`; a class under review is approved at once.
    fn store(&mut self, collection: &str, id: String, mut value: Value) -> Value {
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
    fn insert(
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
    fn update(
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
    fn patch(
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

fn answer(result: Result<Value, Refusal>) -> Response {
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn insert(
    State(state): State<Shared>,
    Path(collection): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut google = state.lock().expect("stand-in state");
    answer(google.insert(&collection, &headers, &body))
}

async fn update(
    State(state): State<Shared>,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut google = state.lock().expect("stand-in state");
    answer(google.update(&collection, &id, &headers, &body))
}

async fn patch(
    State(state): State<Shared>,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut google = state.lock().expect("stand-in state");
    answer(google.patch(&collection, &id, &headers, &body))
}

/// The demo program's settings and one member, as the server will make them.
struct Cards {
    program: Program,
    settings: GoogleSettings,
    member: Member,
}

impl Cards {
    fn new() -> Self {
        Cards {
            program: Program::demo(),
            settings: GoogleSettings {
                issuer_id: ISSUER.into(),
                class_prefix: "bean-leaf-rewards".into(),
                logo_uri: "https://example.com/logo.png".into(),
                origins: vec![],
                smart_tap_issuers: vec![ISSUER.into()],
                demo: false,
            },
            member: Member {
                id: MemberId(uuid::Uuid::from_u128(
                    0x0190_0000_0000_7000_8000_0000_0000_0042,
                )),
                card: CardNumber::from_payload(123_456_789),
                name: "Ada Lovelace".into(),
                phone: None,
                email: None,
                birthday: None,
                marketing_consent: false,
                created_at: Timestamp::from_millis(0),
            },
        }
    }

    fn classes(&self) -> Vec<LoyaltyClass> {
        (0..self.program.tiers.len())
            .map(|tier| self.settings.loyalty_class(&self.program, tier))
            .collect()
    }

    /// The member's object with `balance` points in `tier`.
    fn object(&self, balance: i64, tier: usize) -> LoyaltyObject {
        let summary = MemberSummary {
            balance,
            qualifying: balance,
            tier,
            as_of: Timestamp::from_millis(0),
            last_activity_at: None,
            entry_count: 1,
        };
        self.settings.loyalty_object(&PassMember {
            program: &self.program,
            member: &self.member,
            summary: &summary,
            code: "TP1.0123456789.ABCDEFGHIJKLMNOP",
            auth_token: "0123456789abcdef0123",
            voided: false,
            now: Timestamp::from_millis(0),
        })
    }
}

/// Inserts every tier's class and the member's object in the lowest tier.
async fn insert_all(api: &GoogleWalletApi, cards: &Cards) -> LoyaltyObject {
    for class in cards.classes() {
        assert_eq!(
            api.upsert_class(&class).await.expect("class"),
            Upserted::Inserted
        );
    }
    let object = cards.object(420, 0);
    assert_eq!(
        api.upsert_object(&object).await.expect("object"),
        Upserted::Inserted
    );
    object
}

#[tokio::test]
async fn classes_and_objects_are_inserted_then_patched() {
    let google = StandIn::start(&key_pair().1).await;
    let api = google.client();
    let cards = Cards::new();
    let object = insert_all(&api, &cards).await;
    let stored = google.object(&object.id);
    assert_eq!(stored, serde_json::to_value(&object).expect("object JSON"));
    assert_eq!(google.google().classes.len(), cards.program.tiers.len());

    // Points and tier change: one PATCH moves both.
    let gold = cards.settings.class_id(&cards.program, 2);
    let change = json!({
        "loyaltyPoints": {"label": "Points", "balance": {"int": 1250}},
        "classId": gold,
    });
    api.patch_object(&object.id, &change).await.expect("patch");
    let stored = google.object(&object.id);
    assert_eq!(stored["loyaltyPoints"]["balance"]["int"], 1250);
    assert_eq!(stored["classId"], gold);
    assert_eq!(stored["accountName"], "Ada Lovelace", "other fields kept");

    // A replaced card voids the old pass.
    api.patch_object(&object.id, &json!({"state": "INACTIVE"}))
        .await
        .expect("void");
    assert_eq!(google.object(&object.id)["state"], "INACTIVE");

    let g = google.google();
    assert_eq!(g.tokens_issued, 1, "one token for every call");
    assert_eq!(g.calls.len(), cards.program.tiers.len() + 3);
}

#[tokio::test]
async fn a_second_insert_meets_409_and_becomes_an_update() {
    let google = StandIn::start(&key_pair().1).await;
    let api = google.client();
    let cards = Cards::new();
    let object = insert_all(&api, &cards).await;
    google.google().calls.clear();

    // The stand-in approved the class; an update still says UNDER_REVIEW, whatever the class
    // in hand says.
    let mut class = cards.settings.loyalty_class(&cards.program, 1);
    assert_eq!(
        google.google().classes[&class.id]["reviewStatus"],
        "APPROVED"
    );
    class.program_name = "Bean & Leaf Club".into();
    class.review_status = "APPROVED".into();
    assert_eq!(
        api.upsert_class(&class).await.expect("class"),
        Upserted::Updated
    );
    assert_eq!(
        google.google().classes[&class.id]["programName"],
        "Bean & Leaf Club"
    );

    let moved = cards.object(2_000, 1);
    assert_eq!(moved.id, object.id);
    assert_eq!(
        api.upsert_object(&moved).await.expect("object"),
        Upserted::Updated
    );
    let stored = google.object(&object.id);
    assert_eq!(stored["loyaltyPoints"]["balance"]["int"], 2_000);
    assert_eq!(
        stored["classId"],
        cards.settings.class_id(&cards.program, 1)
    );
    assert_eq!(
        google.google().calls,
        [
            "POST loyaltyClass".to_owned(),
            format!("PUT loyaltyClass/{}", class.id),
            "POST loyaltyObject".to_owned(),
            format!("PATCH loyaltyObject/{}", object.id),
        ]
    );
}

#[tokio::test]
async fn a_revoked_token_is_replaced_and_the_call_sent_once_more() {
    let google = StandIn::start(&key_pair().1).await;
    let api = google.client();
    let cards = Cards::new();
    let object = insert_all(&api, &cards).await;
    google.google().valid_tokens.clear();
    google.google().calls.clear();

    api.patch_object(&object.id, &json!({"state": "INACTIVE"}))
        .await
        .expect("patched with a new token");
    let patch = format!("PATCH loyaltyObject/{}", object.id);
    {
        let g = google.google();
        assert_eq!(g.tokens_issued, 2);
        assert_eq!(g.calls, [patch.clone(), patch.clone()]);
    }
    assert_eq!(google.object(&object.id)["state"], "INACTIVE");

    // A service account Google keeps refusing: one new token, then the 401 is the answer.
    google.google().refuse_every_token = true;
    google.google().calls.clear();
    let err = api
        .patch_object(&object.id, &json!({"state": "ACTIVE"}))
        .await
        .expect_err("refused");
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(!err.is_retryable(), "{err}");
    let g = google.google();
    assert_eq!(g.tokens_issued, 3);
    assert_eq!(g.calls.len(), 2, "sent once more, not again: {:?}", g.calls);
}

#[tokio::test]
async fn tokens_are_kept_until_a_minute_before_they_expire_and_shared() {
    let google = StandIn::start(&key_pair().1).await;
    let cards = Cards::new();
    let api = Arc::new(google.client());
    let object = insert_all(&api, &cards).await;
    assert_eq!(google.google().tokens_issued, 1);

    // Concurrent calls wait for one token rather than each asking.
    let fresh = Arc::new(google.client());
    let mut calls = tokio::task::JoinSet::new();
    for points in 0..8 {
        let api = fresh.clone();
        let id = object.id.clone();
        calls.spawn(async move {
            let change = json!({"loyaltyPoints": {"label": "Points", "balance": {"int": points}}});
            api.patch_object(&id, &change).await
        });
    }
    while let Some(done) = calls.join_next().await {
        done.expect("task").expect("patch");
    }
    assert_eq!(google.google().tokens_issued, 2);

    // A token that lives a minute or less is not kept.
    google.google().token_lifetime = 60;
    let short = google.client();
    for _ in 0..2 {
        short
            .patch_object(&object.id, &json!({"state": "ACTIVE"}))
            .await
            .expect("patch");
    }
    assert_eq!(google.google().tokens_issued, 4);
}

#[tokio::test]
async fn busy_and_failing_google_answers_are_retryable() {
    let google = StandIn::start(&key_pair().1).await;
    let api = google.client();
    let cards = Cards::new();
    let object = insert_all(&api, &cards).await;
    let change = json!({"state": "ACTIVE"});

    google.google().scripted.extend([
        (StatusCode::TOO_MANY_REQUESTS, Some("7"), "Quota exceeded."),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "The service is currently unavailable.",
        ),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "Internal error encountered.",
        ),
    ]);
    let busy = api
        .patch_object(&object.id, &change)
        .await
        .expect_err("429");
    assert!(busy.is_retryable(), "{busy}");
    assert_eq!(busy.status(), Some(429));
    assert_eq!(busy.retry_after(), Some(Duration::from_secs(7)));
    assert!(busy.to_string().contains("Quota exceeded."), "{busy}");

    let down = api.upsert_object(&object).await.expect_err("503");
    assert!(down.is_retryable(), "{down}");
    assert_eq!(down.status(), Some(503));
    assert_eq!(down.retry_after(), None);

    let broken = api
        .upsert_class(&cards.classes()[0])
        .await
        .expect_err("500");
    assert!(
        matches!(
            broken,
            GoogleApiError::Unavailable {
                status: Some(500),
                ..
            }
        ),
        "{broken}"
    );

    // Nothing listening at all: a network error, retryable, at either endpoint.
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        listener.local_addr().expect("address")
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nowhere = GoogleWalletApi::new(
        service_account(&key_pair().0),
        GoogleEndpoints {
            token_url: google.endpoints.token_url.clone(),
            api_base: format!("http://{closed}/walletobjects/v1"),
        },
        reqwest::Client::new(),
    )
    .expect("client");
    let err = nowhere
        .patch_object(&object.id, &change)
        .await
        .expect_err("no API");
    assert!(
        matches!(err, GoogleApiError::Unavailable { status: None, .. }),
        "{err}"
    );
    assert!(err.is_retryable());
    let no_token = GoogleWalletApi::new(
        service_account(&key_pair().0),
        GoogleEndpoints {
            token_url: format!("http://{closed}/token"),
            api_base: google.endpoints.api_base.clone(),
        },
        reqwest::Client::new(),
    )
    .expect("client");
    let err = no_token
        .patch_object(&object.id, &change)
        .await
        .expect_err("no token");
    assert!(
        matches!(err, GoogleApiError::Token { status: None, .. }),
        "{err}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn refusals_are_permanent_and_carry_googles_message() {
    let google = StandIn::start(&key_pair().1).await;
    let api = google.client();
    let cards = Cards::new();
    let object = insert_all(&api, &cards).await;

    google
        .google()
        .scripted
        .push_back((StatusCode::BAD_REQUEST, None, "Invalid Barcode.value"));
    let err = api.upsert_object(&object).await.expect_err("400");
    assert!(!err.is_retryable(), "{err}");
    match &err {
        GoogleApiError::Refused { status, message } => {
            assert_eq!(*status, 400);
            assert_eq!(message, "Invalid Barcode.value");
        }
        other => panic!("not a refusal: {other}"),
    }

    // The stand-in's own checks: a field Google does not document, an unknown object.
    let err = api
        .patch_object(&object.id, &json!({"points": 5}))
        .await
        .expect_err("undocumented field");
    assert_eq!(err.status(), Some(400));
    assert!(
        err.to_string()
            .contains("LoyaltyObject.points is not a documented field"),
        "{err}"
    );
    let missing = format!("{ISSUER}.member-nobody");
    let err = api
        .patch_object(&missing, &json!({"state": "INACTIVE"}))
        .await
        .expect_err("unknown object");
    assert_eq!(err.status(), Some(404));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn the_token_endpoint_refuses_a_jwt_signed_with_another_key() {
    let google = StandIn::start(&key_pair().1).await;
    let (other_private, _) = rsa_key().expect("another key");
    let api = google.client_signing_with(&other_private);
    let cards = Cards::new();
    let err = api
        .upsert_class(&cards.classes()[0])
        .await
        .expect_err("refused");
    match &err {
        GoogleApiError::Token {
            status, message, ..
        } => {
            assert_eq!(*status, Some(400));
            assert!(message.contains("invalid_grant"), "{message}");
        }
        other => panic!("not a token error: {other}"),
    }
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("token endpoint"), "{err}");
    let g = google.google();
    assert_eq!(g.tokens_issued, 0);
    assert!(
        g.calls.is_empty(),
        "no API call without a token: {:?}",
        g.calls
    );
}

#[test]
fn production_endpoints_are_googles() {
    let endpoints = GoogleEndpoints::production(&service_account(&key_pair().0));
    assert_eq!(endpoints.token_url, "https://oauth2.googleapis.com/token");
    assert_eq!(endpoints.api_base, PRODUCTION_API_BASE);
    assert_eq!(
        endpoints.api_base,
        "https://walletobjects.googleapis.com/walletobjects/v1"
    );
}
