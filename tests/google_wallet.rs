//! The Google Wallet REST client against local stand-ins (tests/common/google.rs): an OAuth 2.0
//! token endpoint that verifies the service account's JWT with its public key and issues tokens,
//! and a Wallet Objects endpoint that checks the bearer token, holds every body to Google's
//! discovery document, keeps classes and objects, answers 409 to a second insert and implements
//! PATCH.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::google::*;
use serde_json::json;
use tillpass::domain::{CardNumber, Member, MemberId, MemberSummary, Program, Timestamp};
use tillpass::pass::PassMember;
use tillpass::pass::demo::rsa_key;
use tillpass::pass::google::{GoogleSettings, LoyaltyClass, LoyaltyObject};
use tillpass::server::passes::google::{
    GoogleApiError, GoogleEndpoints, GoogleWalletApi, PRODUCTION_API_BASE, Upserted,
};

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
            stamps: &Default::default(),
            offers: &[],
            badges: &[],
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
