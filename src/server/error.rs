//! The server's one error answer: what went wrong, the status it earns, and what the client is
//! told. 4xx answers say precisely why; 5xx answers say a generic sentence and the detail goes
//! to the log.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::db::DbError;
use super::validate::PushRefusal;
use crate::sync::protocol::{ErrorBody, MAX_BODY_BYTES};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, or one the server does not accept.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token used by a terminal it does not belong to.
    #[error("{0}")]
    Forbidden(String),
    /// A request that cannot be read (bad JSON, bad query, bad path).
    #[error("{0}")]
    BadRequest(String),
    /// Something the server does not have.
    #[error("{0}")]
    NotFound(String),
    /// A request the server's state rules out now (a key offered to a server holding members).
    #[error("{0}")]
    Conflict(String),
    /// A push whose content is refused (which entry, by which rule); nothing was stored.
    #[error(transparent)]
    Refused(PushRefusal),
    /// A request body over the byte limit.
    #[error("the request body is over the limit of {MAX_BODY_BYTES} bytes; send smaller batches")]
    PayloadTooLarge,
    /// A push with more records than one batch may hold.
    #[error("{0}")]
    TooManyRecords(String),
    /// The database cannot be reached or is failing; the detail is for the log.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A fault of the server (setup, corrupt data); the detail is for the log.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The status of the answer; the only place a status is chosen.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge | ApiError::TooManyRecords(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the client is told: the reason for a 4xx, a generic sentence for a 5xx.
    fn client_message(&self) -> String {
        match self {
            ApiError::Unavailable(_) => "the database is unavailable; try again".to_owned(),
            ApiError::Internal(_) => "internal server error".to_owned(),
            _ => self.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let (entry_id, rule) = match &self {
            ApiError::Refused(r) => (r.entry_id, Some(r.rule.to_owned())),
            _ => (None, None),
        };
        let body = ErrorBody {
            error: self.client_message(),
            entry_id,
            rule,
        };
        (status, Json(body)).into_response()
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Refused(r) => ApiError::Refused(r),
            DbError::Unavailable(m) => ApiError::Unavailable(m),
            DbError::Setup(_) | DbError::Internal(_) => ApiError::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DETAIL: &str = "password authentication failed for user tillpass at 10.0.0.7";

    fn every_variant() -> Vec<(ApiError, StatusCode)> {
        vec![
            (ApiError::Unauthorized("u".into()), StatusCode::UNAUTHORIZED),
            (ApiError::Forbidden("f".into()), StatusCode::FORBIDDEN),
            (ApiError::BadRequest("b".into()), StatusCode::BAD_REQUEST),
            (ApiError::NotFound("n".into()), StatusCode::NOT_FOUND),
            (ApiError::Conflict("c".into()), StatusCode::CONFLICT),
            (
                ApiError::Refused(PushRefusal::push("rule", "p".into())),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (ApiError::PayloadTooLarge, StatusCode::PAYLOAD_TOO_LARGE),
            (
                ApiError::TooManyRecords("t".into()),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                ApiError::Unavailable(DETAIL.into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                ApiError::Internal(DETAIL.into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ]
    }

    async fn answer(e: ApiError) -> (StatusCode, String) {
        let response = e.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body: ErrorBody = serde_json::from_slice(&bytes).expect("an ErrorBody");
        (status, body.error)
    }

    #[tokio::test]
    async fn each_variant_has_its_status() {
        for (e, status) in every_variant() {
            let what = format!("{e:?}");
            assert_eq!(e.status_code(), status, "{what}");
            assert_eq!(answer(e).await.0, status, "{what}");
        }
    }

    #[tokio::test]
    async fn a_5xx_body_never_carries_the_detail() {
        for (e, _) in every_variant() {
            if !e.status_code().is_server_error() {
                continue;
            }
            let (_, error) = answer(e).await;
            assert!(!error.contains(DETAIL), "{error}");
            assert!(!error.contains("10.0.0.7"), "{error}");
            assert!(!error.is_empty());
        }
        for db in [
            DbError::Unavailable(DETAIL.into()),
            DbError::Setup(DETAIL.into()),
            DbError::Internal(DETAIL.into()),
        ] {
            let (status, error) = answer(db.into()).await;
            assert!(status.is_server_error(), "{status}");
            assert!(!error.contains(DETAIL), "{error}");
        }
    }

    #[tokio::test]
    async fn a_4xx_body_says_why() {
        let (status, error) = answer(ApiError::NotFound("member 7 is not known".into())).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error, "member 7 is not known");
        let (status, error) = answer(ApiError::PayloadTooLarge).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(error.contains("over the limit"), "{error}");
    }

    #[test]
    fn stored_data_that_does_not_parse_is_a_500_and_refused_content_a_422() {
        let corrupt: ApiError = DbError::Internal("member body: EOF".into()).into();
        assert_eq!(corrupt.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        let unavailable: ApiError = DbError::Unavailable("timeout".into()).into();
        assert_eq!(unavailable.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        let refused: ApiError =
            DbError::Refused(PushRefusal::push("card_taken", "card taken".into())).into();
        assert_eq!(refused.status_code(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(refused.to_string(), "card taken");
    }

    #[tokio::test]
    async fn a_refused_entry_names_itself_and_its_rule() {
        let id = crate::domain::EntryId(uuid::Uuid::from_u128(9));
        let response = ApiError::Refused(PushRefusal::entry(
            id,
            "earn_points",
            "entry 9: earns too much".into(),
        ))
        .into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body: ErrorBody = serde_json::from_slice(&bytes).expect("an ErrorBody");
        assert_eq!(body.entry_id, Some(id));
        assert_eq!(body.rule.as_deref(), Some("earn_points"));
        assert_eq!(body.error, "entry 9: earns too much");
    }
}
