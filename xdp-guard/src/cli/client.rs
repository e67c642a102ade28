//! A typed client for the daemon's REST API.

use std::{path::PathBuf, sync::OnceLock, time::Duration};

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

use super::{
    CliError,
    wire::{
        AllowList, AllowRequest, AuditList, BlockBatchRequest, BlockList, BlockRequest,
        Connections, ErrorBody, Health, OffenderList, Stats,
    },
};
use crate::{
    model::{AllowRecord, BlockRecord},
    sysctl::AuditEntry,
};

/// Longest wait for one request; the API answers from memory, so this only bounds a hung
/// daemon.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Client {
    /// The API's base URL without a trailing slash: `http://127.0.0.1:9180`.
    base: String,
    /// Where the bearer token comes from, read on the first request that needs it so that
    /// unauthenticated calls (`/healthz`) work without it.
    token_file: PathBuf,
    token: OnceLock<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for the API at `base` (`http://host:port`, optionally with a path prefix),
    /// authenticating with the token in `token_file`.
    pub fn new(base: &str, token_file: impl Into<PathBuf>) -> Result<Client, CliError> {
        let url = Url::parse(base).map_err(|e| CliError::BadUrl {
            url: base.to_owned(),
            reason: e.to_string(),
        })?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(CliError::BadUrl {
                    url: base.to_owned(),
                    reason: "this build speaks plain HTTP only (the API listens on loopback); \
                             use http:// or an SSH tunnel"
                        .into(),
                });
            }
            other => {
                return Err(CliError::BadUrl {
                    url: base.to_owned(),
                    reason: format!("unsupported scheme {other:?}; expected http://"),
                });
            }
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(CliError::BadUrl {
                url: base.to_owned(),
                reason: "a base URL takes no query or fragment".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("xdp-guard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| CliError::Request {
                url: base.to_owned(),
                source,
            })?;
        Ok(Client {
            base: url.as_str().trim_end_matches('/').to_owned(),
            token_file: token_file.into(),
            token: OnceLock::new(),
            http,
        })
    }

    /// A client with the token given directly (tests, tools that hold it already).
    pub fn with_token(base: &str, token: impl Into<String>) -> Result<Client, CliError> {
        let client = Client::new(base, PathBuf::new())?;
        let _ = client.token.set(token.into());
        Ok(client)
    }

    /// The base URL, as requests are built from it.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /healthz` (no token needed).
    pub async fn health(&self) -> Result<Health, CliError> {
        let body = self.send(Method::GET, "/healthz", None, false).await?;
        decode(&self.url("/healthz"), &body)
    }

    /// `GET /metrics`: Prometheus text (no token needed).
    pub async fn metrics(&self) -> Result<String, CliError> {
        self.send(Method::GET, "/metrics", None, false).await
    }

    pub async fn stats(&self) -> Result<Stats, CliError> {
        self.get("/v1/stats").await
    }

    /// Tracked sources, highest SYN rate first, at most `limit`.
    pub async fn offenders(&self, limit: usize) -> Result<Vec<super::Offender>, CliError> {
        let list: OffenderList = self.get(&format!("/v1/offenders?limit={limit}")).await?;
        Ok(list.offenders)
    }

    pub async fn blocklist(&self) -> Result<Vec<BlockRecord>, CliError> {
        let list: BlockList = self.get("/v1/blocklist").await?;
        Ok(list.entries)
    }

    /// Blocks `cidr` for `ttl` (whole seconds; `None` is permanent).
    pub async fn block(
        &self,
        cidr: &str,
        ttl: Option<Duration>,
        reason: Option<&str>,
    ) -> Result<BlockRecord, CliError> {
        let request = BlockRequest {
            cidr,
            ttl_secs: whole_secs(ttl),
            reason,
        };
        let body = serde_json::to_value(&request).map_err(|e| CliError::Decode {
            url: self.url("/v1/blocklist"),
            reason: e.to_string(),
        })?;
        let text = self
            .send(Method::POST, "/v1/blocklist", Some(body), true)
            .await?;
        decode(&self.url("/v1/blocklist"), &text)
    }

    /// Blocks every prefix of `cidrs` in one request, all or nothing.
    pub async fn block_many(
        &self,
        cidrs: &[String],
        ttl: Option<Duration>,
        reason: Option<&str>,
    ) -> Result<Vec<BlockRecord>, CliError> {
        const PATH: &str = "/v1/blocklist/batch";
        let request = BlockBatchRequest {
            cidrs,
            ttl_secs: whole_secs(ttl),
            reason,
        };
        let body = serde_json::to_value(&request).map_err(|e| CliError::Decode {
            url: self.url(PATH),
            reason: e.to_string(),
        })?;
        let text = self.send(Method::POST, PATH, Some(body), true).await?;
        let list: BlockList = decode(&self.url(PATH), &text)?;
        Ok(list.entries)
    }

    pub async fn unblock(&self, cidr: &str) -> Result<(), CliError> {
        let path = format!("/v1/blocklist/{}", encode_segment(cidr));
        self.send(Method::DELETE, &path, None, true).await?;
        Ok(())
    }

    pub async fn allowlist(&self) -> Result<Vec<AllowRecord>, CliError> {
        let list: AllowList = self.get("/v1/allowlist").await?;
        Ok(list.entries)
    }

    pub async fn allow(&self, cidr: &str, note: Option<&str>) -> Result<AllowRecord, CliError> {
        let body =
            serde_json::to_value(AllowRequest { cidr, note }).map_err(|e| CliError::Decode {
                url: self.url("/v1/allowlist"),
                reason: e.to_string(),
            })?;
        let text = self
            .send(Method::POST, "/v1/allowlist", Some(body), true)
            .await?;
        decode(&self.url("/v1/allowlist"), &text)
    }

    pub async fn disallow(&self, cidr: &str) -> Result<(), CliError> {
        let path = format!("/v1/allowlist/{}", encode_segment(cidr));
        self.send(Method::DELETE, &path, None, true).await?;
        Ok(())
    }

    /// Sockets by state, and the clients of `port` when given.
    pub async fn connections(&self, port: Option<u16>) -> Result<Connections, CliError> {
        self.get(&Self::connections_path(port)).await
    }

    /// The daemon's sysctl audit (`GET /v1/sysctl`).
    pub async fn sysctl(&self) -> Result<Vec<AuditEntry>, CliError> {
        let list: AuditList = self.get("/v1/sysctl").await?;
        Ok(list.entries)
    }

    /// The path of `GET /v1/connections` for `port`.
    pub fn connections_path(port: Option<u16>) -> String {
        match port {
            Some(p) => format!("/v1/connections?port={p}"),
            None => "/v1/connections".to_owned(),
        }
    }

    /// An authenticated GET returning the body as the server sent it (`--json`).
    pub async fn get_raw(&self, path: &str) -> Result<String, CliError> {
        self.send(Method::GET, path, None, true).await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let body = self.get_raw(path).await?;
        decode(&self.url(path), &body)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn token(&self) -> Result<&str, CliError> {
        if let Some(t) = self.token.get() {
            return Ok(t);
        }
        let text =
            std::fs::read_to_string(&self.token_file).map_err(|source| CliError::TokenFile {
                path: self.token_file.clone(),
                source,
            })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(CliError::EmptyToken {
                path: self.token_file.clone(),
            });
        }
        Ok(self.token.get_or_init(|| token.to_owned()))
    }

    /// One request; a success status gives the body, anything else a [`CliError`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        auth: bool,
    ) -> Result<String, CliError> {
        let url = self.url(path);
        let mut request = self.http.request(method, &url);
        if auth {
            request = request.bearer_auth(self.token()?);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| self.transport(&url, e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.transport(&url, e))?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(api_error(status, &text))
        }
    }

    fn transport(&self, url: &str, e: reqwest::Error) -> CliError {
        if e.is_connect() {
            CliError::Unreachable {
                url: self.base.clone(),
            }
        } else if e.is_timeout() {
            CliError::Timeout {
                url: url.to_owned(),
            }
        } else {
            CliError::Request {
                url: url.to_owned(),
                source: e,
            }
        }
    }
}

impl std::fmt::Debug for Client {
    // Never print the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

fn decode<T: DeserializeOwned>(url: &str, body: &str) -> Result<T, CliError> {
    serde_json::from_str(body).map_err(|e| CliError::Decode {
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

/// An error status as one line: the server's `{"error"}` message, or failing that the first
/// line of the body, or the status's reason phrase.
pub(super) fn api_error(status: StatusCode, body: &str) -> CliError {
    let message = match serde_json::from_str::<ErrorBody>(body) {
        Ok(e) => e.error,
        Err(_) => body.lines().next().unwrap_or("").trim().to_owned(),
    };
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        // One line, whatever the server sent.
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    CliError::Api {
        status: status.as_u16(),
        message,
    }
}

/// Percent-encodes `s` as one URL path segment: every byte but the unreserved characters
/// (RFC 3986) and `:` (so IPv6 addresses stay readable) is escaped; `10.0.0.0/8` becomes
/// `10.0.0.0%2F8`.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A TTL in whole seconds, rounded up so that a sub-second TTL is never sent as a zero.
fn whole_secs(ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|t| t.as_secs() + u64::from(t.subsec_nanos() > 0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cidr_segments_are_percent_encoded() {
        assert_eq!(encode_segment("10.0.0.0/8"), "10.0.0.0%2F8");
        assert_eq!(encode_segment("192.0.2.7"), "192.0.2.7");
        assert_eq!(encode_segment("2001:db8::/32"), "2001:db8::%2F32");
        assert_eq!(encode_segment("a b%?#"), "a%20b%25%3F%23");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn api_errors_become_one_line() {
        let e = api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"error":"10.0.0.0/7 is broader than /8, the broadest IPv4 prefix accepted"}"#,
        );
        assert_eq!(
            e.to_string(),
            "422: 10.0.0.0/7 is broader than /8, the broadest IPv4 prefix accepted"
        );
        let e = api_error(
            StatusCode::NOT_FOUND,
            r#"{"error":"10.0.0.1/32 is not in the list"}"#,
        );
        assert_eq!(e.to_string(), "404: 10.0.0.1/32 is not in the list");
        // Not JSON: the first line of the body.
        let e = api_error(StatusCode::BAD_GATEWAY, "upstream down\nmore detail\n");
        assert_eq!(e.to_string(), "502: upstream down");
        // Nothing at all: the reason phrase.
        let e = api_error(StatusCode::INTERNAL_SERVER_ERROR, "");
        assert_eq!(e.to_string(), "500: Internal Server Error");
        // A multi-line message is folded into one.
        let e = api_error(StatusCode::BAD_REQUEST, r#"{"error":"bad\nrequest"}"#);
        assert_eq!(e.to_string(), "400: bad request");
        // Authentication failures say where the token comes from.
        let e = api_error(StatusCode::UNAUTHORIZED, r#"{"error":"invalid token"}"#);
        assert_eq!(
            e.to_string(),
            "401: invalid token (check --token-file / XDP_GUARD_TOKEN_FILE)"
        );
    }

    #[test]
    fn base_urls_are_checked() {
        let c = Client::new("http://127.0.0.1:9180/", "/nonexistent").unwrap();
        assert_eq!(c.base(), "http://127.0.0.1:9180");
        let c = Client::new("http://localhost:9180/guard/", "/nonexistent").unwrap();
        assert_eq!(c.url("/v1/stats"), "http://localhost:9180/guard/v1/stats");
        for bad in [
            "127.0.0.1:9180",
            "https://127.0.0.1:9180",
            "ftp://x",
            "not a url",
        ] {
            let e = Client::new(bad, "/nonexistent").unwrap_err();
            assert!(matches!(e, CliError::BadUrl { .. }), "{bad}: {e:?}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn unreadable_token_names_the_path_and_the_remedy() {
        let c = Client::new("http://127.0.0.1:9180", "/nonexistent/api.token").unwrap();
        let e = c.token().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/api.token"), "{e}");
        assert!(e.contains("--token-file"), "{e}");
        assert!(e.contains("XDP_GUARD_TOKEN_FILE"), "{e}");
        assert_eq!(e.lines().count(), 1);
    }

    #[test]
    fn token_is_trimmed_and_empty_is_refused() {
        let dir = std::env::temp_dir().join(format!("xdp-guard-cli-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "  s3cret\n").unwrap();
        let c = Client::new("http://127.0.0.1:9180", &file).unwrap();
        assert_eq!(c.token().unwrap(), "s3cret");
        std::fs::write(&file, "\n").unwrap();
        let c = Client::new("http://127.0.0.1:9180", &file).unwrap();
        assert!(matches!(c.token(), Err(CliError::EmptyToken { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
        // The Debug form never shows the token.
        let c = Client::with_token("http://127.0.0.1:9180", "s3cret").unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
