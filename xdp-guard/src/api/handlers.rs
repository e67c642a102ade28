//! The handlers, and the middleware for authentication and the write limit.
//!
//! Guard calls, socket dumps and sysctl reads run on the blocking pool: the guard's lock
//! can be held across a state save (an fsync), which must not stall the runtime's workers.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{
        ConnectInfo, Path, Query, Request, State,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{MethodFilter, MethodRouter, on},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiState,
    error::ApiError,
    limit::retry_after_secs,
    metrics,
    routes::{Endpoint, openapi},
    token::constant_time_eq,
};
use crate::{
    controller::{Guard, GuardError},
    tcpstate::{self, Filter, StateSet},
};

/// Longest TTL a block request may ask for: ten years. Longer is what "permanent" is for.
pub const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 60 * 60;

/// Longest `reason` or `note`, in characters.
pub const MAX_TEXT_CHARS: usize = 256;

const DEFAULT_OFFENDERS: usize = 20;
const MAX_OFFENDERS: usize = 1000;

/// The method router serving `endpoint` for the methods in `filter`.
pub(super) fn method_router(endpoint: Endpoint, filter: MethodFilter) -> MethodRouter<ApiState> {
    match endpoint {
        Endpoint::Healthz => on(filter, healthz),
        Endpoint::Metrics => on(filter, prometheus),
        Endpoint::Stats => on(filter, stats),
        Endpoint::Offenders => on(filter, offenders),
        Endpoint::Blocklist => on(filter, blocklist),
        Endpoint::Block => on(filter, block),
        Endpoint::BlockBatch => on(filter, block_batch),
        Endpoint::Unblock => on(filter, unblock),
        Endpoint::Allowlist => on(filter, allowlist),
        Endpoint::Allow => on(filter, allow),
        Endpoint::Disallow => on(filter, disallow),
        Endpoint::Connections => on(filter, connections),
        Endpoint::Sysctl => on(filter, sysctl),
        Endpoint::OpenApi => on(filter, openapi_document),
    }
}

/// Run `f` on the guard from the blocking pool.
async fn with_guard<T, F>(state: &ApiState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Guard) -> T + Send + 'static,
{
    let guard = Arc::clone(&state.guard);
    tokio::task::spawn_blocking(move || f(&guard))
        .await
        .map_err(|e| ApiError::internal(format!("guard task: {e}")))
}

// ---- middleware ----

/// `Authorization: Bearer <token>`, compared in constant time.
pub(super) async fn require_token(
    State(state): State<ApiState>,
    req: Request,
    next: Next,
) -> Response {
    match bearer(req.headers()) {
        None => ApiError::Unauthorized("this endpoint needs an Authorization: Bearer token")
            .into_response(),
        Some(token) if constant_time_eq(token.as_bytes(), state.token.as_bytes()) => {
            next.run(req).await
        }
        Some(_) => {
            log::debug!(
                "API: wrong bearer token from {}",
                peer(&req).map_or_else(|| "an unknown peer".to_string(), |p| p.to_string())
            );
            ApiError::Unauthorized("the bearer token is not valid").into_response()
        }
    }
}

/// The token of an `Authorization: Bearer` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The TCP peer, as the server recorded it; headers are not consulted.
fn peer(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

/// The per-client write limit, keyed on the TCP peer address only.
pub(super) async fn limit_writes(
    State(state): State<ApiState>,
    req: Request,
    next: Next,
) -> Response {
    match state.limiter.check(peer(&req).map(|p| p.ip())) {
        Ok(()) => next.run(req).await,
        Err(wait) => ApiError::RateLimited {
            retry_after_secs: retry_after_secs(wait),
        }
        .into_response(),
    }
}

/// Headers on every response: nothing here is for caches, and nothing is HTML.
pub(super) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub(super) async fn not_found(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_string())
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

// ---- unauthenticated ----

async fn healthz(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let s = with_guard(&state, Guard::stats).await?;
    Ok(Json(json!({
        "status": "ok",
        "interface": s.interface,
        "xdp_mode": s.xdp_mode,
    })))
}

async fn prometheus(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let s = with_guard(&state, Guard::stats).await?;
    Ok((
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&s),
    )
        .into_response())
}

// ---- reads ----

async fn stats(State(state): State<ApiState>) -> Result<Response, ApiError> {
    Ok(Json(with_guard(&state, Guard::stats).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OffendersQuery {
    limit: Option<usize>,
}

async fn offenders(
    State(state): State<ApiState>,
    query: Result<Query<OffendersQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(DEFAULT_OFFENDERS);
    if !(1..=MAX_OFFENDERS).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be from 1 to {MAX_OFFENDERS}, got {limit}"
        )));
    }
    let offenders = with_guard(&state, move |g| g.offenders(limit)).await?;
    Ok(Json(json!({ "offenders": offenders })))
}

async fn blocklist(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let entries = with_guard(&state, Guard::blocklist).await?;
    Ok(Json(json!({ "entries": entries })))
}

async fn allowlist(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let entries = with_guard(&state, Guard::allowlist).await?;
    Ok(Json(json!({ "entries": entries })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionsQuery {
    port: Option<u16>,
}

async fn connections(
    query: Result<Query<ConnectionsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let filter = match q.port {
        Some(0) => return Err(ApiError::BadRequest("port must be from 1 to 65535".into())),
        Some(port) => Filter::local_port(port),
        None => Filter {
            port: None,
            states: StateSet::ALL,
        },
    };
    let snapshot = tokio::task::spawn_blocking(move || tcpstate::snapshot(&filter))
        .await
        .map_err(|e| ApiError::internal(format!("connections task: {e}")))?
        .map_err(|e| ApiError::internal(format!("connections: {e}")))?;
    Ok(Json(snapshot).into_response())
}

async fn sysctl(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let root = state.settings.sysctl_root.clone();
    let entries = tokio::task::spawn_blocking(move || crate::sysctl::audit(&root))
        .await
        .map_err(|e| ApiError::internal(format!("sysctl audit task: {e}")))?;
    Ok(Json(json!({ "entries": entries })))
}

async fn openapi_document() -> Json<Value> {
    Json(openapi())
}

// ---- writes ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockRequest {
    cidr: String,
    ttl_secs: Option<u64>,
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockBatchRequest {
    cidrs: Vec<String>,
    ttl_secs: Option<u64>,
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowRequest {
    cidr: String,
    note: Option<String>,
}

/// Free text that goes into the state file and the log: short, and one line.
fn check_text(field: &str, text: Option<String>) -> Result<Option<String>, ApiError> {
    if let Some(t) = &text {
        if t.chars().count() > MAX_TEXT_CHARS {
            return Err(ApiError::BadRequest(format!(
                "{field} is longer than {MAX_TEXT_CHARS} characters"
            )));
        }
        if t.chars().any(char::is_control) {
            return Err(ApiError::BadRequest(format!(
                "{field} must not contain control characters (newlines included)"
            )));
        }
    }
    Ok(text)
}

/// `Location` of a list entry: the prefix with its slash percent-encoded.
fn entry_location(list: &str, cidr: impl std::fmt::Display) -> Option<HeaderValue> {
    let encoded = cidr.to_string().replace('/', "%2F");
    HeaderValue::from_str(&format!("/v1/{list}/{encoded}")).ok()
}

async fn block(
    State(state): State<ApiState>,
    body: Result<Json<BlockRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) =
        body.map_err(|r| ApiError::from_json_rejection(r, state.settings.max_body_bytes))?;
    let ttl = ttl(req.ttl_secs)?;
    let reason = check_text("reason", req.reason)?;
    let cidr = req.cidr;
    let record = with_guard(&state, move |g| g.block(&cidr, ttl, reason)).await??;
    let mut response = (StatusCode::CREATED, Json(&record)).into_response();
    if let Some(location) = entry_location("blocklist", record.cidr) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `ttl_secs` as a duration; over ten years is an error, absent is permanent.
fn ttl(secs: Option<u64>) -> Result<Option<Duration>, ApiError> {
    match secs {
        Some(secs) if secs > MAX_TTL_SECS => Err(GuardError::InvalidTtl(format!(
            "at most {MAX_TTL_SECS} seconds (ten years); leave ttl_secs out for a permanent block"
        ))
        .into()),
        other => Ok(other.map(Duration::from_secs)),
    }
}

/// Many prefixes in one request, all or nothing ([`Guard::block_many`]): a feed, without one
/// request (and one write of the per-peer limit) per prefix.
async fn block_batch(
    State(state): State<ApiState>,
    body: Result<Json<BlockBatchRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) =
        body.map_err(|r| ApiError::from_json_rejection(r, state.settings.max_body_bytes))?;
    let ttl = ttl(req.ttl_secs)?;
    let reason = check_text("reason", req.reason)?;
    let cidrs = req.cidrs;
    let entries = with_guard(&state, move |g| g.block_many(&cidrs, ttl, reason)).await??;
    Ok((StatusCode::CREATED, Json(json!({ "entries": entries }))).into_response())
}

async fn unblock(
    State(state): State<ApiState>,
    cidr: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(cidr) = cidr?;
    with_guard(&state, move |g| g.unblock(&cidr)).await??;
    Ok(StatusCode::NO_CONTENT)
}

async fn allow(
    State(state): State<ApiState>,
    body: Result<Json<AllowRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) =
        body.map_err(|r| ApiError::from_json_rejection(r, state.settings.max_body_bytes))?;
    let note = check_text("note", req.note)?;
    let cidr = req.cidr;
    let record = with_guard(&state, move |g| g.allow(&cidr, note)).await??;
    let mut response = (StatusCode::CREATED, Json(&record)).into_response();
    if let Some(location) = entry_location("allowlist", record.cidr) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn disallow(
    State(state): State<ApiState>,
    cidr: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(cidr) = cidr?;
    with_guard(&state, move |g| g.disallow(&cidr)).await??;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).expect("header"),
            );
            m
        };
        assert_eq!(bearer(&h("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&h("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&h("Basic abc")), None);
        assert_eq!(bearer(&h("Bearer")), None);
        assert_eq!(bearer(&h("Bearer ")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn text_fields_are_one_short_line() {
        assert!(check_text("reason", Some("scanner".into())).is_ok());
        assert!(check_text("reason", None).is_ok());
        assert!(check_text("reason", Some("a\nb".into())).is_err());
        assert!(check_text("reason", Some("x".repeat(MAX_TEXT_CHARS + 1))).is_err());
    }
}
