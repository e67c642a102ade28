//! What the API answers when something goes wrong: a status code and `{"error": "..."}`.
//!
//! Client mistakes are explained (the message names the input and, for a prefix with host
//! bits, its canonical form). Server-side failures (saving state, the datapath, a panicked
//! task) are logged in full and answered with a bare "internal error": paths, errno values
//! and map names stay in the log.

use axum::{
    Json,
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{bpf::BpfError, controller::GuardError};

/// The body of every error response.
pub const INTERNAL_ERROR: &str = "internal error";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A guard operation refused or failed; the variant decides the status.
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// The request is malformed: bad JSON, an unknown field, a bad query value.
    #[error("{0}")]
    BadRequest(String),
    /// No or a wrong bearer token.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// No route for this path.
    #[error("no such endpoint: {0}")]
    NoRoute(String),
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// Too many changing requests from one client address.
    #[error("too many changes from this address; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Something on our side broke. The string is logged, never sent.
    #[error("{INTERNAL_ERROR}")]
    Internal(String),
}

/// The status of a guard error; a batch entry's is its own error's.
fn guard_status(e: &GuardError) -> StatusCode {
    match e {
        GuardError::InvalidCidr { .. }
        | GuardError::HostBits { .. }
        | GuardError::InvalidTtl(_)
        | GuardError::BatchSize(_) => StatusCode::BAD_REQUEST,
        GuardError::TooBroad { .. }
        | GuardError::OverlapsAllowlist { .. }
        | GuardError::Protected { .. }
        | GuardError::Datapath(BpfError::TooManyV6Lengths(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        GuardError::NotFound(_) => StatusCode::NOT_FOUND,
        GuardError::Full(_) | GuardError::Datapath(BpfError::AllowlistFull) => {
            StatusCode::INSUFFICIENT_STORAGE
        }
        GuardError::Persist(_) | GuardError::Datapath(_) => StatusCode::INTERNAL_SERVER_ERROR,
        GuardError::BatchEntry { source, .. } => guard_status(source),
    }
}

impl ApiError {
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::Internal(detail.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Guard(e) => guard_status(e),
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The text a client sees: the error's own message, or [`INTERNAL_ERROR`] for a 5xx
    /// other than "full".
    fn public_message(&self, status: StatusCode) -> String {
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            INTERNAL_ERROR.to_string()
        } else {
            self.to_string()
        }
    }

    /// A JSON body that failed to arrive: too large (413), not JSON or not the right
    /// shape (400).
    pub fn from_json_rejection(rejection: JsonRejection, limit: usize) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                Self::BadRequest("expected a JSON body with Content-Type: application/json".into())
            }
            JsonRejection::JsonSyntaxError(_) | JsonRejection::JsonDataError(_) => {
                // serde's message is about the client's own input: the field, line, column.
                Self::BadRequest(rejection.body_text())
            }
            r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge { limit },
            r => {
                log::debug!("reading a request body: {}", r.body_text());
                Self::BadRequest("could not read the request body".into())
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::BadRequest(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        if r.status().is_server_error() {
            Self::internal(r.body_text())
        } else {
            Self::BadRequest(r.body_text())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            match &self {
                Self::Internal(detail) => log::error!("API: {detail}"),
                other => log::error!("API: {other}"),
            }
        }
        let body = Json(json!({ "error": self.public_message(status) }));
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        match &self {
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::store::StoreError;

    #[test]
    fn internal_failures_say_nothing_about_paths() {
        let persist = ApiError::Guard(GuardError::Persist(StoreError::Write {
            path: PathBuf::from("/var/lib/xdp-guard/state.json"),
            source: std::io::Error::from_raw_os_error(28),
        }));
        assert_eq!(persist.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(persist.public_message(persist.status()), INTERNAL_ERROR);
        let datapath = ApiError::Guard(GuardError::Datapath(BpfError::MissingMap("BLOCK_V4")));
        assert_eq!(datapath.public_message(datapath.status()), INTERNAL_ERROR);
        let internal = ApiError::internal("join error: task 7 panicked");
        assert_eq!(internal.public_message(internal.status()), INTERNAL_ERROR);
    }

    #[test]
    fn full_lists_are_507_and_say_so() {
        let full = ApiError::Guard(GuardError::Full(10));
        assert_eq!(full.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert!(full.public_message(full.status()).contains("full"));
        let allow = ApiError::Guard(GuardError::Datapath(BpfError::AllowlistFull));
        assert_eq!(allow.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(
            allow.public_message(allow.status()),
            "datapath: the allowlist is full"
        );
    }
}
