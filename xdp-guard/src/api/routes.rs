//! The route table: what [`super::router`] serves and what `/v1/openapi.json` documents,
//! written down once. The router is built by walking [`ROUTES`], so a route cannot be
//! served without being documented, nor documented without being served.

use axum::routing::MethodFilter;
use serde_json::{Map, Value, json};

/// HTTP methods the API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HttpMethod {
    Get,
    Post,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Delete => "DELETE",
        }
    }

    /// Routes with these methods change state: they are rate limited per client.
    pub fn changes_state(self) -> bool {
        matches!(self, Self::Post | Self::Delete)
    }

    pub(crate) fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
            Self::Delete => MethodFilter::DELETE,
        }
    }
}

/// The handler a route is served by (see `handlers::method_router`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Healthz,
    Metrics,
    Stats,
    Offenders,
    Blocklist,
    Block,
    BlockBatch,
    Unblock,
    Allowlist,
    Allow,
    Disallow,
    Connections,
    Sysctl,
    OpenApi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamIn {
    Path,
    Query,
}

#[derive(Clone, Copy, Debug)]
pub struct ParamDoc {
    pub name: &'static str,
    pub location: ParamIn,
    /// OpenAPI schema type: `string` or `integer`.
    pub kind: &'static str,
    pub description: &'static str,
}

/// A successful response.
#[derive(Clone, Copy, Debug)]
pub enum Body {
    /// No body (204).
    Empty,
    /// JSON described by `components/schemas/<name>`.
    Json(&'static str),
    /// Some other media type.
    Text(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub struct RouteDoc {
    pub method: HttpMethod,
    /// axum path syntax, which is also OpenAPI's: `/v1/blocklist/{cidr}`.
    pub path: &'static str,
    pub(crate) endpoint: Endpoint,
    pub summary: &'static str,
    pub description: &'static str,
    /// Requires `Authorization: Bearer <token>`.
    pub auth: bool,
    pub params: &'static [ParamDoc],
    /// The JSON request body's schema name, if the route takes one.
    pub request: Option<&'static str>,
    pub status: u16,
    pub response: Body,
    /// Errors particular to this route. 400/413 (bodies), 401 (auth), 429 (writes) and 500
    /// are added from the route's other properties.
    pub errors: &'static [(u16, &'static str)],
}

const CIDR_PARAM: ParamDoc = ParamDoc {
    name: "cidr",
    location: ParamIn::Path,
    kind: "string",
    description: "The entry's prefix, with the slash percent-encoded (`10.0.0.0%2F8`); a bare \
                  address is a /32 or /128.",
};

const BAD_CIDR: (u16, &str) = (
    400,
    "Not an address or prefix, or host bits set (the message names the canonical prefix).",
);

/// Every route the API serves.
pub const ROUTES: &[RouteDoc] = &[
    RouteDoc {
        method: HttpMethod::Get,
        path: "/healthz",
        endpoint: Endpoint::Healthz,
        summary: "Liveness",
        description: "Answers while the daemon runs; names the interface and XDP mode.",
        auth: false,
        params: &[],
        request: None,
        status: 200,
        response: Body::Json("Health"),
        errors: &[],
    },
    RouteDoc {
        method: HttpMethod::Get,
        path: "/metrics",
        endpoint: Endpoint::Metrics,
        summary: "Prometheus metrics",
        description: "Counters, list sizes and the attack state in the Prometheus text \
                      format 0.0.4.",
        auth: false,
        params: &[],
        request: None,
        status: 200,
        response: Body::Text(super::metrics::CONTENT_TYPE),
        errors: &[],
    },
    RouteDoc {
        method: HttpMethod::Get,
        path: "/v1/stats",
        endpoint: Endpoint::Stats,
        summary: "Counters, rates and state",
        description: "The XDP program's counters, the controller's rates, list sizes and \
                      the attack state.",
        auth: true,
        params: &[],
        request: None,
        status: 200,
        response: Body::Json("Stats"),
        errors: &[],
    },
    RouteDoc {
        method: HttpMethod::Get,
        path: "/v1/offenders",
        endpoint: Endpoint::Offenders,
        summary: "Top sources by SYN rate",
        description: "Tracked sources, highest current SYN rate first, with their recent \
                      rate history and block status.",
        auth: true,
        params: &[ParamDoc {
            name: "limit",
            location: ParamIn::Query,
            kind: "integer",
            description: "How many sources, 1 to 1000; 20 when absent.",
        }],
        request: None,
        status: 200,
        response: Body::Json("OffenderList"),
        errors: &[(400, "`limit` is not an integer from 1 to 1000.")],
    },
    RouteDoc {
        method: HttpMethod::Get,
        path: "/v1/blocklist",
        endpoint: Endpoint::Blocklist,
        summary: "List blocks",
        description: "Every blocked prefix: manual, automatic and their expiry.",
        auth: true,
        params: &[],
        request: None,
        status: 200,
        response: Body::Json("BlockList"),
        errors: &[],
    },
    RouteDoc {
        method: HttpMethod::Post,
        path: "/v1/blocklist",
        endpoint: Endpoint::Block,
        summary: "Block a prefix",
        description: "Drops every packet from the prefix at the XDP hook until `ttl_secs` \
                      have passed (permanent without one). Blocking a blocked prefix \
                      replaces its entry.",
        auth: true,
        params: &[],
        request: Some("BlockRequest"),
        status: 201,
        response: Body::Json("BlockRecord"),
        errors: &[
            BAD_CIDR,
            (
                422,
                "Broader than the configured minimum prefix, overlapping the allowlist, or \
                 covering a protected network (loopback, the host, admin networks).",
            ),
            (507, "The blocklist is full."),
        ],
    },
    RouteDoc {
        method: HttpMethod::Post,
        path: "/v1/blocklist/batch",
        endpoint: Endpoint::BlockBatch,
        summary: "Block many prefixes at once",
        description: "A feed: every prefix in `cidrs` (1 to 10,000) with one TTL and reason, \
                      all or nothing. Each is checked as a single block is; the first that \
                      fails is named by its position, and nothing in the batch is applied. \
                      The request counts once against the write limit; its size is bounded \
                      by `api.max_body_bytes`.",
        auth: true,
        params: &[],
        request: Some("BlockBatchRequest"),
        status: 201,
        response: Body::Json("BlockList"),
        errors: &[
            (
                400,
                "A prefix that does not parse or has host bits set, a bad TTL, or no prefixes \
                 or more than 10,000.",
            ),
            (
                422,
                "A prefix broader than the configured minimum, overlapping the allowlist, or \
                 covering a protected network.",
            ),
            (507, "The blocklist would be full."),
        ],
    },
    RouteDoc {
        method: HttpMethod::Delete,
        path: "/v1/blocklist/{cidr}",
        endpoint: Endpoint::Unblock,
        summary: "Unblock a prefix",
        description: "Removes the entry for exactly this prefix.",
        auth: true,
        params: &[CIDR_PARAM],
        request: None,
        status: 204,
        response: Body::Empty,
        errors: &[BAD_CIDR, (404, "No entry for this prefix.")],
    },
    RouteDoc {
        method: HttpMethod::Get,
        path: "/v1/allowlist",
        endpoint: Endpoint::Allowlist,
        summary: "List allowed prefixes",
        description: "Prefixes never rate limited or blocked, from the configuration and \
                      the API.",
        auth: true,
        params: &[],
        request: None,
        status: 200,
        response: Body::Json("AllowList"),
        errors: &[],
    },
    RouteDoc {
        method: HttpMethod::Post,
        path: "/v1/allowlist",
        endpoint: Endpoint::Allow,
        summary: "Allow a prefix",
        description: "Exempts the prefix from rate limiting and blocking. Allowing an \
                      allowed prefix returns the existing entry.",
        auth: true,
        params: &[],
        request: Some("AllowRequest"),
        status: 201,
        response: Body::Json("AllowRecord"),
        errors: &[BAD_CIDR, (507, "The allowlist is full.")],
    },
    RouteDoc {
        method: HttpMethod::Delete,
        path: "/v1/allowlist/{cidr}",
        endpoint: Endpoint::Disallow,
        summary: "Remove an allowed prefix",
        description: "Removes the entry for exactly this prefix.",
        auth: true,
        params: &[CIDR_PARAM],
        request: None,
        status: 204,
        response: Body::Empty,
        errors: &[BAD_CIDR, (404, "No entry for this prefix.")],
    },
    RouteDoc {
        method: HttpMethod::Get,
        path: "/v1/connections",
        endpoint: Endpoint::Connections,
        summary: "TCP sockets by state",
        description: "The host's TCP sockets by state and, with `port`, the sockets of that \
                      local port by state and by remote address (netstat -nat, done through \
                      sock_diag).",
        auth: true,
        params: &[ParamDoc {
            name: "port",
            location: ParamIn::Query,
            kind: "integer",
            description: "Local port (1 to 65535) to break down by state and client.",
        }],
        request: None,
        status: 200,
        response: Body::Json("Connections"),
        errors: &[(400, "`port` is not an integer from 1 to 65535.")],
    },
    RouteDoc {
        method: HttpMethod::Get,
        path: "/v1/sysctl",
        endpoint: Endpoint::Sysctl,
        summary: "Sysctl audit",
        description: "Each SYN-flood related sysctl: its value, the recommended one and why.",
        auth: true,
        params: &[],
        request: None,
        status: 200,
        response: Body::Json("SysctlAudit"),
        errors: &[],
    },
    RouteDoc {
        method: HttpMethod::Get,
        path: "/v1/openapi.json",
        endpoint: Endpoint::OpenApi,
        summary: "This document",
        description: "The OpenAPI 3.0 description of the API, generated from the route \
                      table the router is built from.",
        auth: true,
        params: &[],
        request: None,
        status: 200,
        response: Body::Json("OpenApi"),
        errors: &[],
    },
];

fn reason(status: u16) -> &'static str {
    axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {
            "application/json": { "schema": { "$ref": "#/components/schemas/Error" } }
        }
    })
}

fn operation(route: &RouteDoc) -> Value {
    let mut responses = Map::new();
    let ok = match route.response {
        Body::Empty => json!({ "description": reason(route.status) }),
        Body::Json(schema) => json!({
            "description": reason(route.status),
            "content": {
                "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } }
            }
        }),
        Body::Text(media) => json!({
            "description": reason(route.status),
            "content": { (media): { "schema": { "type": "string" } } }
        }),
    };
    responses.insert(route.status.to_string(), ok);
    let mut errors: Vec<(u16, String)> = route
        .errors
        .iter()
        .map(|(s, d)| (*s, (*d).to_string()))
        .collect();
    if route.request.is_some() {
        errors.push((
            400,
            "The body is not JSON, lacks `Content-Type: application/json`, or has an unknown \
             or ill-typed field."
                .into(),
        ));
        errors.push((413, "The body is larger than `api.max_body_bytes`.".into()));
    }
    if route.auth {
        errors.push((401, "No bearer token, or the wrong one.".into()));
    }
    if route.method.changes_state() {
        errors.push((
            429,
            "Too many changes from this client address; `Retry-After` says when to retry.".into(),
        ));
    }
    if route.path.starts_with("/v1/") {
        errors.push((
            500,
            "Internal error (details are in the daemon's log).".into(),
        ));
    }
    errors.sort_by_key(|(s, _)| *s);
    // One entry per status: descriptions of a shared status are joined.
    let mut merged: Vec<(u16, String)> = Vec::new();
    for (status, description) in errors {
        match merged.last_mut() {
            Some((s, d)) if *s == status => {
                d.push(' ');
                d.push_str(&description);
            }
            _ => merged.push((status, description)),
        }
    }
    for (status, description) in merged {
        responses.insert(status.to_string(), error_response(&description));
    }

    let mut op = Map::new();
    op.insert("operationId".into(), operation_id(route.endpoint).into());
    op.insert("summary".into(), route.summary.into());
    op.insert("description".into(), route.description.into());
    if !route.params.is_empty() {
        let params: Vec<Value> = route
            .params
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "in": match p.location { ParamIn::Path => "path", ParamIn::Query => "query" },
                    "required": p.location == ParamIn::Path,
                    "description": p.description,
                    "schema": { "type": p.kind },
                })
            })
            .collect();
        op.insert("parameters".into(), params.into());
    }
    if let Some(schema) = route.request {
        op.insert(
            "requestBody".into(),
            json!({
                "required": true,
                "content": {
                    "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } }
                }
            }),
        );
    }
    op.insert("responses".into(), responses.into());
    op.insert(
        "security".into(),
        if route.auth {
            json!([{ "bearerAuth": [] }])
        } else {
            json!([])
        },
    );
    op.into()
}

/// `Healthz` -> `healthz`, `OpenApi` -> `openApi`.
fn operation_id(endpoint: Endpoint) -> String {
    let name = format!("{endpoint:?}");
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// The OpenAPI 3.0 document for [`ROUTES`].
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let item = paths
            .entry(route.path)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(route.method.as_str().to_ascii_lowercase(), operation(route));
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "xdp-guard",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The xdp-guard daemon's API: counters, offenders, the block and \
                            allow lists, TCP state and the sysctl audit. Everything under \
                            /v1 needs `Authorization: Bearer <token>` (the token file named \
                            by api.token_file). Errors are `{\"error\": \"...\"}`.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearerAuth": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas(),
        },
    })
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": properties,
    })
}

fn all_required(properties: Value) -> Value {
    let names: Vec<String> = properties
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    object(&names, properties)
}

fn count_map(description: &str) -> Value {
    json!({
        "type": "object",
        "description": description,
        "additionalProperties": { "type": "integer", "minimum": 0 },
    })
}

/// Schemas of the request and response bodies. The API tests check real responses
/// against them, so they follow the Rust types.
fn schemas() -> Value {
    let cidr = json!({ "type": "string", "description": "CIDR prefix, e.g. 192.0.2.0/24 or 2001:db8::/48" });
    let ms = json!({ "type": "integer", "minimum": 0, "description": "Milliseconds since the Unix epoch" });
    let nullable_ms = json!({ "type": "integer", "minimum": 0, "nullable": true, "description": "Milliseconds since the Unix epoch; null for never" });
    let origin = json!({ "type": "string", "enum": ["manual", "auto", "config"] });
    let ttl_secs = json!({
        "type": "integer", "minimum": 1, "maximum": super::handlers::MAX_TTL_SECS,
        "description": "Block length in seconds; absent for a permanent block.",
    });
    let reason = json!({
        "type": "string", "maxLength": super::handlers::MAX_TEXT_CHARS,
        "description": "Shown in the list and the log; \"manual\" when absent.",
    });
    let list = |item: &str, key: &str| {
        all_required(json!({
            (key): { "type": "array", "items": { "$ref": format!("#/components/schemas/{item}") } }
        }))
    };
    json!({
        "Error": all_required(json!({ "error": { "type": "string" } })),
        "Health": all_required(json!({
            "status": { "type": "string", "enum": ["ok"] },
            "interface": { "type": "string" },
            "xdp_mode": { "type": "string" },
        })),
        "BlockRequest": object(&["cidr"], json!({
            "cidr": { "type": "string", "description": "Address or canonical prefix; host bits set is an error." },
            "ttl_secs": ttl_secs,
            "reason": reason,
        })),
        "BlockBatchRequest": object(&["cidrs"], json!({
            "cidrs": {
                "type": "array", "minItems": 1, "maxItems": crate::controller::MAX_BATCH,
                "items": { "type": "string" },
                "description": "Addresses or canonical prefixes; a prefix given twice is blocked once.",
            },
            "ttl_secs": ttl_secs,
            "reason": reason,
        })),
        "AllowRequest": object(&["cidr"], json!({
            "cidr": { "type": "string", "description": "Address or canonical prefix; host bits set is an error." },
            "note": { "type": "string", "maxLength": super::handlers::MAX_TEXT_CHARS },
        })),
        "BlockRecord": all_required(json!({
            "cidr": cidr,
            "expires_at_ms": nullable_ms,
            "reason": { "type": "string" },
            "origin": origin,
            "offences": { "type": "integer", "minimum": 0, "description": "Earlier offences of this source when the block was made" },
            "created_at_ms": ms,
        })),
        "AllowRecord": all_required(json!({
            "cidr": cidr,
            "origin": origin,
            "note": { "type": "string" },
            "created_at_ms": ms,
        })),
        "BlockList": list("BlockRecord", "entries"),
        "AllowList": list("AllowRecord", "entries"),
        "Offender": all_required(json!({
            "source": cidr,
            "syn_rate": { "type": "number", "description": "SYN/s over the last tick" },
            "syns": { "type": "integer", "minimum": 0 },
            "dropped": { "type": "integer", "minimum": 0, "description": "SYNs over the limit" },
            "blocked": { "type": "boolean" },
            "blocked_until_ms": nullable_ms,
            "history": { "type": "array", "items": { "type": "number" }, "description": "SYN/s per tick, oldest first" },
        })),
        "OffenderList": list("Offender", "offenders"),
        "Stats": all_required(json!({
            "interface": { "type": "string" },
            "xdp_mode": { "type": "string" },
            "enforce": { "type": "boolean" },
            "counters": count_map("The XDP program's counters by name"),
            "rates": all_required(json!({
                "packets_per_sec": { "type": "number" },
                "syns_per_sec": { "type": "number" },
                "dropped_per_sec": { "type": "number" },
                "new_sources_per_sec": { "type": "number" },
            })),
            "blocklist_size": { "type": "integer", "minimum": 0 },
            "allowlist_size": { "type": "integer", "minimum": 0 },
            "tracked_sources": { "type": "integer", "minimum": 0 },
            "attack_state": { "type": "string", "enum": ["none", "per_source", "spoofed"] },
            "spoof_guard": { "type": "boolean" },
            "sysctl_profile": { "type": "string", "enum": ["unchanged", "under_attack"] },
            "syn_recv": { "type": "integer", "minimum": 0 },
            "tick_duration_ms": { "type": "number" },
            "ticks": { "type": "integer", "minimum": 0 },
            "uptime_secs": { "type": "integer", "minimum": 0 },
        })),
        "Connections": object(
            &["total", "states", "syn_recv", "port", "port_states", "clients"],
            json!({
                "total": { "type": "integer", "minimum": 0 },
                "states": count_map("Sockets by state (netstat names)"),
                "syn_recv": { "type": "integer", "minimum": 0 },
                "port": { "type": "integer", "nullable": true },
                "port_states": count_map("Sockets of `port` by state"),
                "clients": {
                    "type": "array",
                    "items": all_required(json!({
                        "addr": { "type": "string" },
                        "connections": { "type": "integer", "minimum": 0 },
                    })),
                },
                "unknown_states": { "type": "integer", "minimum": 0 },
            }),
        ),
        "SysctlAudit": all_required(json!({
            "entries": {
                "type": "array",
                "items": all_required(json!({
                    "key": { "type": "string" },
                    "current": { "type": "string", "nullable": true },
                    "recommended": { "type": "string", "nullable": true },
                    "rule": { "type": "string" },
                    "scope": { "type": "string" },
                    "status": { "type": "string", "enum": ["ok", "differs", "absent", "removed", "unreadable"] },
                    "why": { "type": "string" },
                    "error": { "type": "string", "nullable": true },
                })),
            }
        })),
        "OpenApi": { "type": "object", "description": "An OpenAPI 3.0 document" },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn one_route_per_method_and_path_and_handler() {
        let mut seen = HashSet::new();
        let mut handlers = HashSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method, r.path)),
                "{} {}",
                r.method.as_str(),
                r.path
            );
            assert!(
                handlers.insert(format!("{:?}", r.endpoint)),
                "{:?}",
                r.endpoint
            );
            assert!(
                r.auth == r.path.starts_with("/v1/"),
                "everything under /v1 and nothing else needs the token: {}",
                r.path
            );
            for p in r.params.iter().filter(|p| p.location == ParamIn::Path) {
                assert!(r.path.contains(&format!("{{{}}}", p.name)), "{}", r.path);
            }
        }
    }

    #[test]
    fn operation_ids_are_camel_case() {
        assert_eq!(operation_id(Endpoint::OpenApi), "openApi");
        assert_eq!(operation_id(Endpoint::Healthz), "healthz");
    }
}
