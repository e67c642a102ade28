//! The REST API: JSON over HTTP/1.1, served by axum.
//!
//! - `GET /healthz` and `GET /metrics` are open (liveness probes, Prometheus);
//! - everything under `/v1` needs `Authorization: Bearer <token>`, the token kept in
//!   `api.token_file` ([`load_or_create_token`]);
//! - changing routes (POST, DELETE) are limited to `api.writes_per_minute` per client,
//!   keyed on the TCP peer address;
//! - request bodies are limited to `api.max_body_bytes`;
//! - errors are `{"error": "..."}` with the status codes of [`ApiError`].
//!
//! [`router`] is built from [`ROUTES`], the same table `/v1/openapi.json` documents.
//! Tests drive it with `tower::ServiceExt::oneshot`; the daemon hands it to [`serve`].

mod error;
mod handlers;
mod limit;
mod metrics;
mod routes;
mod token;

use std::{fmt, future::Future, io, net::SocketAddr, path::PathBuf, sync::Arc};

use axum::{Router, extract::DefaultBodyLimit, middleware};
use tokio::net::TcpListener;

pub use self::{
    error::{ApiError, INTERNAL_ERROR},
    handlers::{MAX_TEXT_CHARS, MAX_TTL_SECS},
    limit::WriteLimiter,
    metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE,
    routes::{Body, HttpMethod, ParamDoc, ParamIn, ROUTES, RouteDoc, openapi},
    token::{TOKEN_BYTES, TokenError, load_or_create_token},
};
use crate::{config::ApiConfig, controller::Guard};

/// What the API needs of the configuration.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Changing requests (POST, DELETE) allowed per client address per minute.
    pub writes_per_minute: u32,
    /// The sysctl tree `/v1/sysctl` audits (normally `/proc/sys`).
    pub sysctl_root: PathBuf,
}

impl ApiSettings {
    pub fn from_config(api: &ApiConfig, sysctl_root: PathBuf) -> Self {
        Self {
            max_body_bytes: api.max_body_bytes,
            writes_per_minute: api.writes_per_minute,
            sysctl_root,
        }
    }
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    guard: Arc<Guard>,
    token: Arc<str>,
    settings: Arc<ApiSettings>,
    limiter: Arc<WriteLimiter>,
}

impl ApiState {
    pub fn new(guard: Arc<Guard>, token: String, settings: ApiSettings) -> Self {
        Self {
            guard,
            token: token.into(),
            limiter: Arc::new(WriteLimiter::new(settings.writes_per_minute)),
            settings: Arc::new(settings),
        }
    }

    pub fn guard(&self) -> &Arc<Guard> {
        &self.guard
    }

    pub fn settings(&self) -> &ApiSettings {
        &self.settings
    }
}

impl fmt::Debug for ApiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiState")
            .field("token", &"<redacted>")
            .field("settings", &self.settings)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

/// The API's router: one route per [`ROUTES`] entry, with the token check on routes that
/// need it and the write limit on changing ones (checked after the token, so only clients
/// holding it spend a bucket), JSON 404 and 405 answers, and the body limit.
pub fn router(state: ApiState) -> Router {
    let mut app = Router::new();
    for route in ROUTES {
        let mut handler = handlers::method_router(route.endpoint, route.method.filter());
        if route.method.changes_state() {
            handler = handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                handlers::limit_writes,
            ));
        }
        if route.auth {
            // Added last, so it runs first.
            handler = handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                handlers::require_token,
            ));
        }
        app = app.route(route.path, handler);
    }
    app.method_not_allowed_fallback(handlers::method_not_allowed)
        .fallback(handlers::not_found)
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(middleware::map_response(handlers::security_headers))
        .with_state(state)
}

/// Serve `router` on `listener` until `shutdown` completes, then finish the requests in
/// flight. Handlers see the TCP peer address (`ConnectInfo<SocketAddr>`), which the write
/// limit is keyed on.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
