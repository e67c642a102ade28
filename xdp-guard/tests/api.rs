//! API tests without root: the router on a guard over an in-memory dataplane, driven with
//! `oneshot` (every route, every error), plus one daemon-style run on a real socket.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{HeaderMap, Request, StatusCode, header},
};
use http_body_util::BodyExt as _;
use ipnet::IpNet;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tower::ServiceExt as _;
use xdp_guard::{
    api::{
        self, ApiSettings, ApiState, Body as DocBody, HttpMethod, INTERNAL_ERROR, ParamIn, ROUTES,
        RouteDoc, TokenError,
    },
    controller::{Guard, MemoryDataplane, Settings},
    model::BlockRecord,
    store::Store,
    tcpstate,
};
use xdp_guard_common::stats;

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

// ---------------------------------------------------------------------------------------
// Test bed

struct Bed {
    app: Router,
    guard: Arc<Guard>,
    dp: Arc<Mutex<MemoryDataplane>>,
    dir: PathBuf,
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xg-api-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn bed_with(tag: &str, writes_per_minute: u32, max_body_bytes: usize) -> Bed {
    bed_in(temp_dir(tag), writes_per_minute, max_body_bytes)
}

/// A bed on the state already in `dir` (a restart).
fn bed_in(dir: PathBuf, writes_per_minute: u32, max_body_bytes: usize) -> Bed {
    let settings = Settings::for_tests(&dir);
    let sysctl_root = settings.sysctl_root.clone();
    let dp = Arc::new(Mutex::new(MemoryDataplane::new()));
    let guard = Arc::new(
        Guard::new(
            Box::new(dp.clone()),
            Store::new(dir.join("state.json")),
            settings,
            "native",
        )
        .expect("guard"),
    );
    let state = ApiState::new(
        guard.clone(),
        TOKEN.to_string(),
        ApiSettings {
            max_body_bytes,
            writes_per_minute,
            sysctl_root,
        },
    );
    Bed {
        app: api::router(state),
        guard,
        dp,
        dir,
    }
}

fn bed(tag: &str) -> Bed {
    bed_with(tag, 100_000, 16_384)
}

impl Bed {
    async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.app.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let body = res
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Blocklist as the guard and as the dataplane have it.
    fn blocks(&self) -> (Vec<BlockRecord>, BTreeMap<IpNet, u64>) {
        (
            self.guard.blocklist(),
            self.dp.lock().expect("dp").blocks.clone(),
        )
    }

    fn net(&self, s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// An error reply: this status, JSON `{"error": ...}` and nothing else, the message
    /// containing `needle`.
    #[track_caller]
    fn assert_error(&self, status: StatusCode, needle: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.header(header::CONTENT_TYPE),
            Some("application/json"),
            "{}",
            self.text()
        );
        let body = self.json();
        let obj = body.as_object().expect("object");
        assert_eq!(obj.len(), 1, "only an error message: {body}");
        let msg = obj["error"].as_str().expect("error string").to_string();
        assert!(msg.contains(needle), "{status}: {msg:?} lacks {needle:?}");
        msg
    }
}

#[derive(Default)]
struct Req {
    method: &'static str,
    path: String,
    token: Option<String>,
    body: Option<String>,
    content_type: Option<&'static str>,
    peer: Option<SocketAddr>,
    headers: Vec<(&'static str, String)>,
}

impl Req {
    fn new(method: &'static str, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            token: Some(TOKEN.into()),
            ..Default::default()
        }
    }
    fn get(path: impl Into<String>) -> Self {
        Self::new("GET", path)
    }
    fn post(path: impl Into<String>, body: impl Into<String>) -> Self {
        let mut r = Self::new("POST", path);
        r.body = Some(body.into());
        r.content_type = Some("application/json");
        r
    }
    fn delete(path: impl Into<String>) -> Self {
        Self::new("DELETE", path)
    }
    fn token(mut self, token: Option<&str>) -> Self {
        self.token = token.map(str::to_string);
        self
    }
    fn content_type(mut self, ct: Option<&'static str>) -> Self {
        self.content_type = ct;
        self
    }
    fn peer(mut self, peer: &str) -> Self {
        self.peer = Some(peer.parse().expect("peer address"));
        self
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn build(self) -> Request<Body> {
        let mut b = Request::builder().method(self.method).uri(&self.path);
        if let Some(t) = &self.token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(ct) = self.content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        for (name, value) in &self.headers {
            b = b.header(*name, value);
        }
        let mut req = b
            .body(self.body.map_or_else(Body::empty, Body::from))
            .expect("request");
        if let Some(peer) = self.peer {
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        req
    }
}

/// A request that succeeds on `route` (given the entries [`seed`] makes), so every
/// documented route can be called. A new route needs an example here.
fn example(route: &RouteDoc) -> Req {
    match (route.method, route.path) {
        (HttpMethod::Post, "/v1/blocklist") => Req::post(
            route.path,
            r#"{"cidr": "192.0.2.10", "ttl_secs": 60, "reason": "example"}"#,
        ),
        (HttpMethod::Post, "/v1/blocklist/batch") => Req::post(
            route.path,
            r#"{"cidrs": ["192.0.2.20", "192.0.2.32/27"], "ttl_secs": 60, "reason": "feed"}"#,
        ),
        (HttpMethod::Post, "/v1/allowlist") => Req::post(
            route.path,
            r#"{"cidr": "203.0.113.0/24", "note": "example"}"#,
        ),
        (HttpMethod::Delete, "/v1/blocklist/{cidr}") => Req::delete("/v1/blocklist/192.0.2.9"),
        (HttpMethod::Delete, "/v1/allowlist/{cidr}") => {
            Req::delete("/v1/allowlist/198.51.100.0%2F24")
        }
        (HttpMethod::Get, "/v1/offenders") => Req::get("/v1/offenders?limit=5"),
        (HttpMethod::Get, "/v1/connections") => Req::get("/v1/connections?port=80"),
        (HttpMethod::Get, path) => Req::get(path),
        (m, p) => panic!("no example request for {} {p}", m.as_str()),
    }
}

/// The entries [`example`]'s DELETEs remove.
fn seed(b: &Bed) {
    b.guard.block("192.0.2.9", None, None).expect("seed block");
    b.guard
        .allow("198.51.100.0/24", Some("seed".into()))
        .expect("seed allow");
}

/// Whether this machine lets an unprivileged process dump sockets with sock_diag.
fn sock_diag_works() -> bool {
    tcpstate::snapshot(&tcpstate::Filter::local_port(80)).is_ok()
}

// ---------------------------------------------------------------------------------------
// Prometheus exposition format 0.0.4, parsed strictly

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("bad value {s:?}")),
    }
}

/// `{a="x",b="y"}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("expected {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !valid_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err("label value not quoted".into());
        }
        let mut value = String::new();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break eq + 1 + i + 1,
                Some((_, '\\')) => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err("raw newline in label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} repeated"));
        }
        rest = &rest[end..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Every line must be HELP, TYPE or a sample; every sample's family typed before it, each
/// family's lines together, no series twice, counters non-negative and named `_total`.
fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    if !text.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps = BTreeSet::new();
    let mut finished = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series = BTreeSet::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        let mut enter = |family: &str| -> Result<(), String> {
            if current.as_deref() != Some(family) {
                if let Some(prev) = current.replace(family.to_string()) {
                    finished.insert(prev);
                }
                if finished.contains(family) {
                    return Err(format!("family {family} is split"));
                }
            }
            Ok(())
        };
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .ok_or_else(|| at("HELP without text".into()))?;
            if !valid_metric_name(name) {
                return Err(at("bad metric name".into()));
            }
            if help.contains("\\") && help.replace("\\\\", "").replace("\\n", "").contains('\\') {
                return Err(at("bad escape in HELP".into()));
            }
            if !helps.insert(name.to_string()) {
                return Err(at("second HELP".into()));
            }
            enter(name).map_err(at)?;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without type".into()))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind}")));
            }
            if types.insert(name.to_string(), kind.to_string()).is_some() {
                return Err(at("second TYPE".into()));
            }
            enter(name).map_err(at)?;
        } else if line.starts_with('#') || line.trim().is_empty() {
            return Err(at("unexpected comment or blank line".into()));
        } else {
            let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
            let name = &line[..name_end];
            if !valid_metric_name(name) {
                return Err(at("bad metric name".into()));
            }
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..]).map_err(at)?
            } else {
                (BTreeMap::new(), &line[name_end..])
            };
            let rest = rest
                .strip_prefix(' ')
                .ok_or_else(|| at("no space before the value".into()))?;
            let mut fields = rest.split(' ');
            let value = parse_value(fields.next().unwrap_or_default()).map_err(at)?;
            if let Some(ts) = fields.next() {
                ts.parse::<i64>().map_err(|_| at("bad timestamp".into()))?;
            }
            if fields.next().is_some() {
                return Err(at("trailing fields".into()));
            }
            let kind = types
                .get(name)
                .ok_or_else(|| at("sample before its TYPE".into()))?;
            if kind == "counter" && (!name.ends_with("_total") || value < 0.0) {
                return Err(at("counter not named _total or negative".into()));
            }
            enter(name).map_err(at)?;
            if !series.insert((name.to_string(), labels.clone())) {
                return Err(at("duplicate series".into()));
            }
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
    }
    for name in helps {
        if !types.contains_key(&name) {
            return Err(format!("{name} has HELP but no TYPE"));
        }
    }
    Ok(samples)
}

fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == labels)
        .map(|s| s.value)
}

#[test]
fn exposition_parser_rejects_what_prometheus_would() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\na_total{x=\"2\"} 4\n";
    assert_eq!(parse_exposition(ok).expect("valid").len(), 2);
    for bad in [
        "a 1\n",                                                    // no TYPE
        "# TYPE a gauge\na 1",                                      // no final newline
        "# TYPE a gauge\na{x=1} 1\n",                               // unquoted label
        "# TYPE a gauge\na{x=\"1} 1\n",                             // unterminated
        "# TYPE a gauge\na one\n",                                  // bad value
        "# TYPE a gauge\na 1\na 2\n",                               // duplicate series
        "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"y\"} 2\n", // split family
        "# TYPE a counter\na 1\n",                                  // counter without _total
        "# TYPE a gauge\n\na 1\n",                                  // blank line
        "# TYPE a gauge\na{x=\"\\q\"} 1\n",                         // bad escape
        "# TYPE a gauge\na 1 2 3\n",                                // trailing field
        "# TYPE 1a gauge\n1a 1\n",                                  // bad name
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------
// A small OpenAPI schema checker: enough to hold the documented schemas to the real bodies

fn check_schema(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/components/schemas/")
            .ok_or_else(|| format!("{at}: unsupported $ref {r}"))?;
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            return Err(format!("{at}: $ref to missing schema {name}"));
        }
        return check_schema(doc, target, value, at);
    }
    if value.is_null() {
        return if schema["nullable"] == json!(true) {
            Ok(())
        } else {
            Err(format!("{at}: null but not nullable"))
        };
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!("{at}: {value} not in {allowed:?}"));
    }
    match schema.get("type").and_then(Value::as_str) {
        None => Ok(()),
        Some("object") => {
            let obj = value
                .as_object()
                .ok_or_else(|| format!("{at}: not an object"))?;
            let props = schema.get("properties").and_then(Value::as_object);
            for req in schema["required"].as_array().into_iter().flatten() {
                let key = req.as_str().unwrap_or_default();
                if !obj.contains_key(key) {
                    return Err(format!("{at}: missing {key}"));
                }
            }
            for (k, v) in obj {
                let here = format!("{at}.{k}");
                match props.and_then(|p| p.get(k)) {
                    Some(s) => check_schema(doc, s, v, &here)?,
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            return Err(format!("{here}: not documented"));
                        }
                        Some(s @ Value::Object(_)) => check_schema(doc, s, v, &here)?,
                        _ => {}
                    },
                }
            }
            Ok(())
        }
        Some("array") => {
            let items = value
                .as_array()
                .ok_or_else(|| format!("{at}: not an array"))?;
            for (i, v) in items.iter().enumerate() {
                check_schema(doc, &schema["items"], v, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        Some("string") if value.is_string() => Ok(()),
        Some("integer") if value.is_u64() || value.is_i64() => Ok(()),
        Some("number") if value.is_number() => Ok(()),
        Some("boolean") if value.is_boolean() => Ok(()),
        Some(t) => Err(format!("{at}: {value} is not a {t}")),
    }
}

// ---------------------------------------------------------------------------------------
// The route table and the router agree

#[tokio::test]
async fn every_documented_route_is_served_with_its_documented_status() {
    let b = bed("served");
    seed(&b);
    let connections_ok = sock_diag_works();
    for route in ROUTES {
        let r = b.send(example(route).build()).await;
        if route.path == "/v1/connections" && !connections_ok {
            r.assert_error(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_ERROR);
            continue;
        }
        assert_eq!(
            r.status.as_u16(),
            route.status,
            "{} {}: {}",
            route.method.as_str(),
            route.path,
            r.text()
        );
        match route.response {
            DocBody::Empty => assert!(r.body.is_empty()),
            DocBody::Json(_) => {
                assert_eq!(r.header(header::CONTENT_TYPE), Some("application/json"));
                r.json();
            }
            DocBody::Text(media) => assert_eq!(r.header(header::CONTENT_TYPE), Some(media)),
        }
        assert_eq!(r.header(header::CACHE_CONTROL), Some("no-store"));
    }
}

#[tokio::test]
async fn undocumented_paths_are_404_and_other_methods_405() {
    let b = bed("unrouted");
    for path in [
        "/",
        "/v1",
        "/v1/",
        "/v1/nope",
        "/v2/stats",
        "/healthz/",
        "/v1/stats/extra",
        "/v1/blocklist/a/b",
        // An unencoded slash makes two segments: no such route.
        "/v1/blocklist/10.0.0.0/8",
    ] {
        for method in ["GET", "POST", "DELETE"] {
            let r = b.send(Req::new(method, path).build()).await;
            r.assert_error(StatusCode::NOT_FOUND, "no such endpoint");
        }
    }
    let paths: BTreeSet<&str> = ROUTES.iter().map(|r| r.path).collect();
    for path in paths {
        let served: BTreeSet<&str> = ROUTES
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.method.as_str())
            .collect();
        let concrete = path.replace("{cidr}", "192.0.2.1");
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if served.contains(method) {
                continue;
            }
            let r = b.send(Req::new(method, concrete.clone()).build()).await;
            r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "not allowed");
            let allow = r.header(header::ALLOW).unwrap_or_default().to_string();
            for m in &served {
                assert!(
                    allow.contains(m),
                    "{method} {path}: Allow {allow:?} lacks {m}"
                );
            }
        }
    }
}

#[tokio::test]
async fn openapi_document_is_the_route_table() {
    let b = bed("openapi");
    seed(&b);
    let doc = b.send(Req::get("/v1/openapi.json").build()).await.json();
    assert_eq!(doc, api::openapi());
    assert!(
        doc["openapi"]
            .as_str()
            .expect("version")
            .starts_with("3.0.")
    );

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.as_str().to_string(), r.path.to_string()))
        .collect();
    assert_eq!(documented, table);

    for route in ROUTES {
        let op = &doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
        let secured = op["security"] == json!([{ "bearerAuth": [] }]);
        assert_eq!(secured, route.auth, "{}", route.path);
        let responses = op["responses"].as_object().expect("responses");
        assert!(responses.contains_key(&route.status.to_string()));
        if route.auth {
            assert!(responses.contains_key("401"), "{}", route.path);
        }
        if route.method.changes_state() {
            assert!(responses.contains_key("429"), "{}", route.path);
        }
        if route.request.is_some() {
            assert!(responses.contains_key("413"), "{}", route.path);
        }
        for p in route.params {
            let declared = op["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .any(|d| d["name"] == p.name);
            assert!(declared, "{} {}", route.path, p.name);
            if p.location == ParamIn::Path {
                assert!(route.path.contains(&format!("{{{}}}", p.name)));
            }
        }
    }

    // The documented schemas hold for the real bodies, errors included.
    let connections_ok = sock_diag_works();
    for route in ROUTES {
        let r = b.send(example(route).build()).await;
        if let DocBody::Json(schema) = route.response {
            if route.path == "/v1/connections" && !connections_ok {
                continue;
            }
            let schema = json!({ "$ref": format!("#/components/schemas/{schema}") });
            check_schema(&doc, &schema, &r.json(), route.path)
                .unwrap_or_else(|e| panic!("{} {}: {e}", route.method.as_str(), route.path));
        }
    }
    let err = b.send(Req::get("/v1/stats").token(None).build()).await;
    check_schema(
        &doc,
        &json!({ "$ref": "#/components/schemas/Error" }),
        &err.json(),
        "401",
    )
    .expect("error schema");
    // And the request schemas list exactly the fields the API accepts.
    for (schema, accepted) in [
        (
            "BlockRequest",
            json!({"cidr": "192.0.2.77", "ttl_secs": 5, "reason": "r"}),
        ),
        ("AllowRequest", json!({"cidr": "192.0.2.78", "note": "n"})),
    ] {
        let props: BTreeSet<&String> = doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .collect();
        let sent: BTreeSet<&String> = accepted.as_object().expect("object").keys().collect();
        assert_eq!(props, sent, "{schema}");
        let path = if schema == "BlockRequest" {
            "/v1/blocklist"
        } else {
            "/v1/allowlist"
        };
        let r = b.send(Req::post(path, accepted.to_string()).build()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
}

// ---------------------------------------------------------------------------------------
// Authentication

#[tokio::test]
async fn every_v1_route_needs_the_token() {
    let b = bed("auth");
    seed(&b);
    let before = b.blocks();
    let allows_before = b.guard.allowlist();
    let wrong_same_length: String = TOKEN.chars().rev().collect();
    let v1: Vec<&RouteDoc> = ROUTES
        .iter()
        .filter(|r| r.path.starts_with("/v1/"))
        .collect();
    assert!(v1.len() >= 10);
    for route in v1 {
        assert!(route.auth, "{} is under /v1 without auth", route.path);
        for (what, token) in [
            ("missing", None),
            ("wrong", Some("not-the-token")),
            ("wrong, same length", Some(wrong_same_length.as_str())),
            ("prefix", Some(&TOKEN[..32])),
            ("longer", Some(&*format!("{TOKEN}x"))),
        ] {
            let r = b.send(example(route).token(token).build()).await;
            r.assert_error(StatusCode::UNAUTHORIZED, "token");
            assert_eq!(
                r.header(header::WWW_AUTHENTICATE),
                Some("Bearer"),
                "{} {} ({what})",
                route.method.as_str(),
                route.path
            );
        }
        let basic = example(route)
            .token(None)
            .header("authorization", format!("Basic {TOKEN}"))
            .build();
        b.send(basic)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "token");
    }
    assert_eq!(b.blocks(), before, "unauthenticated writes changed nothing");
    assert_eq!(b.guard.allowlist(), allows_before);

    // The scheme is case-insensitive; the open routes need nothing.
    let lower = Req::get("/v1/stats")
        .token(None)
        .header("authorization", format!("bearer {TOKEN}"))
        .build();
    assert_eq!(b.send(lower).await.status, StatusCode::OK);
    for open in ["/healthz", "/metrics"] {
        let r = b.send(Req::get(open).token(None).build()).await;
        assert_eq!(r.status, StatusCode::OK, "{open}");
        let r = b.send(Req::get(open).token(Some("wrong")).build()).await;
        assert_eq!(r.status, StatusCode::OK, "{open} ignores a wrong token");
    }
}

// ---------------------------------------------------------------------------------------
// Open routes

#[tokio::test]
async fn healthz_names_interface_and_mode() {
    let b = bed("healthz");
    let r = b.send(Req::get("/healthz").token(None).build()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"status": "ok", "interface": "test0", "xdp_mode": "native"})
    );
}

#[tokio::test]
async fn metrics_are_valid_exposition_and_match_the_counters() {
    let b = bed("metrics");
    {
        let mut dp = b.dp.lock().expect("dp");
        for (i, idx) in stats::OUTCOMES.iter().enumerate() {
            dp.counters[*idx] = 1000 + i as u64;
        }
        dp.counters[stats::SYNS] = 777;
        dp.counters[stats::EVENTS_SENT] = 12;
        dp.counters[stats::EVENTS_SUPPRESSED] = 3;
        dp.counters[stats::LRU_ADMITTED] = 45;
        dp.counters[stats::FLOOD_GUARD] = 6;
    }
    seed(&b);
    b.guard.block("192.0.2.200", None, None).expect("block");

    let r = b.send(Req::get("/metrics").token(None).build()).await;
    assert_eq!(r.status, StatusCode::OK);
    let ct = r.header(header::CONTENT_TYPE).expect("content type");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = r.text();
    let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    for (i, idx) in stats::OUTCOMES.iter().enumerate() {
        let verdict = stats::NAMES[*idx];
        assert_eq!(
            sample(&samples, "xdp_guard_packets_total", &[("verdict", verdict)]),
            Some(1000.0 + i as f64),
            "{verdict}"
        );
    }
    let verdicts: BTreeSet<&str> = samples
        .iter()
        .filter(|s| s.name == "xdp_guard_packets_total")
        .map(|s| s.labels["verdict"].as_str())
        .collect();
    let expected: BTreeSet<&str> = [
        "passed",
        "allowlisted",
        "dropped_blocklist",
        "dropped_rate",
        "would_drop",
        "dropped_malformed",
        "non_ip",
        "dropped_unverified",
    ]
    .into();
    assert_eq!(verdicts, expected);
    let one = |name: &str, labels: &[(&str, &str)]| {
        sample(&samples, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?}\n{text}"))
    };
    assert_eq!(one("xdp_guard_syns_total", &[]), 777.0);
    assert_eq!(one("xdp_guard_spoof_guard", &[]), 0.0);
    assert_eq!(one("xdp_guard_events_total", &[("kind", "sent")]), 12.0);
    assert_eq!(
        one("xdp_guard_events_total", &[("kind", "suppressed")]),
        3.0
    );
    assert_eq!(one("xdp_guard_lru_admitted_total", &[]), 45.0);
    assert_eq!(one("xdp_guard_flood_guard_total", &[]), 6.0);
    assert_eq!(one("xdp_guard_blocklist_entries", &[]), 2.0);
    assert_eq!(one("xdp_guard_allowlist_entries", &[]), 1.0);
    assert_eq!(one("xdp_guard_tracked_sources", &[]), 0.0);
    assert_eq!(one("xdp_guard_attack_state", &[("state", "none")]), 1.0);
    assert_eq!(
        one("xdp_guard_attack_state", &[("state", "per_source")]),
        0.0
    );
    assert_eq!(one("xdp_guard_attack_state", &[("state", "spoofed")]), 0.0);
    assert_eq!(
        one("xdp_guard_sysctl_profile", &[("profile", "unchanged")]),
        1.0
    );
    assert_eq!(
        one("xdp_guard_sysctl_profile", &[("profile", "under_attack")]),
        0.0
    );
    assert!(one("xdp_guard_controller_tick_seconds", &[]) >= 0.0);
    assert_eq!(one("xdp_guard_xdp_mode", &[("mode", "native")]), 1.0);
    assert_eq!(one("xdp_guard_xdp_mode", &[("mode", "generic")]), 0.0);
    assert_eq!(one("xdp_guard_syn_recv", &[]), 0.0);
    // Every family has HELP and TYPE.
    for family in samples.iter().map(|s| &s.name).collect::<BTreeSet<_>>() {
        assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
    }
}

// ---------------------------------------------------------------------------------------
// Reads

#[tokio::test]
async fn stats_are_the_guards_snapshot() {
    let b = bed("stats");
    b.dp.lock().expect("dp").counters[stats::DROP_RATE] = 42;
    seed(&b);
    let r = b.send(Req::get("/v1/stats").build()).await;
    assert_eq!(r.status, StatusCode::OK);
    let s = r.json();
    assert_eq!(s["interface"], "test0");
    assert_eq!(s["xdp_mode"], "native");
    assert_eq!(s["counters"]["dropped_rate"], 42);
    assert_eq!(s["blocklist_size"], 1);
    assert_eq!(s["allowlist_size"], 1);
    assert_eq!(s["attack_state"], "none");
    assert_eq!(s["sysctl_profile"], "unchanged");
}

#[tokio::test(start_paused = true)]
async fn offenders_after_two_ticks_over_the_limit() {
    let b = bed("offenders");
    let attacker: std::net::IpAddr = "192.0.2.66".parse().expect("addr");
    let polite: std::net::IpAddr = "192.0.2.10".parse().expect("addr");
    b.guard.tick();
    for _ in 0..2 {
        tokio::time::advance(Duration::from_millis(250)).await;
        b.dp.lock().expect("dp").add_syns(attacker, 500); // 2,000 SYN/s
        b.dp.lock().expect("dp").add_syns(polite, 10); // 40 SYN/s
        b.guard.tick();
    }

    let r = b.send(Req::get("/v1/offenders").build()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.json();
    let list = body["offenders"].as_array().expect("offenders");
    assert_eq!(list.len(), 2);
    let top = &list[0];
    assert_eq!(top["source"], "192.0.2.66/32");
    assert!((top["syn_rate"].as_f64().expect("rate") - 2000.0).abs() < 1.0);
    assert_eq!(top["syns"], 1000);
    assert_eq!(top["blocked"], true);
    assert!(top["blocked_until_ms"].as_u64().is_some());
    assert_eq!(top["history"].as_array().expect("history").len(), 2);
    assert_eq!(list[1]["source"], "192.0.2.10/32");
    assert_eq!(list[1]["blocked"], false);
    assert_eq!(list[1]["blocked_until_ms"], Value::Null);

    let r = b.send(Req::get("/v1/offenders?limit=1").build()).await;
    assert_eq!(r.json()["offenders"].as_array().expect("list").len(), 1);
    let r = b.send(Req::get("/v1/offenders?limit=1000").build()).await;
    assert_eq!(r.status, StatusCode::OK);

    let blocks = b.send(Req::get("/v1/blocklist").build()).await.json();
    assert_eq!(blocks["entries"][0]["cidr"], "192.0.2.66/32");
    assert_eq!(blocks["entries"][0]["origin"], "auto");
    let s = b.send(Req::get("/v1/stats").build()).await.json();
    assert_eq!(s["attack_state"], "per_source");
    assert_eq!(s["tracked_sources"], 2);
    let m = b.send(Req::get("/metrics").build()).await.text();
    let samples = parse_exposition(&m).expect("exposition");
    assert_eq!(
        sample(
            &samples,
            "xdp_guard_attack_state",
            &[("state", "per_source")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&samples, "xdp_guard_tracked_sources", &[]),
        Some(2.0)
    );
}

#[tokio::test]
async fn offenders_limit_is_checked() {
    let b = bed("offlimit");
    for (query, needle) in [
        ("limit=0", "from 1 to 1000"),
        ("limit=1001", "from 1 to 1000"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=", "limit"),
        ("lmit=5", "unknown field"),
    ] {
        b.send(Req::get(format!("/v1/offenders?{query}")).build())
            .await
            .assert_error(StatusCode::BAD_REQUEST, needle);
    }
    let r = b.send(Req::get("/v1/offenders").build()).await;
    assert_eq!(r.json(), json!({"offenders": []}));
}

#[tokio::test]
async fn connections_snapshot_or_a_generic_error() {
    let b = bed("connections");
    for query in ["?port=0", "?port=65536", "?port=http", "?prt=80"] {
        b.send(Req::get(format!("/v1/connections{query}")).build())
            .await
            .assert_error(StatusCode::BAD_REQUEST, "port");
    }
    if !sock_diag_works() {
        // Netlink refused here: the answer is generic, the detail only in the log.
        let r = b.send(Req::get("/v1/connections").build()).await;
        assert_eq!(r.json(), json!({"error": INTERNAL_ERROR}));
        return;
    }
    // A listener of our own on a port, seen in the port view.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let r = b
        .send(Req::get(format!("/v1/connections?port={port}")).build())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let snap = r.json();
    assert_eq!(snap["port"], port);
    assert!(snap["port_states"]["LISTEN"].as_u64().expect("listen") >= 1);
    assert!(snap["total"].as_u64().expect("total") >= 1);

    let whole = b.send(Req::get("/v1/connections").build()).await.json();
    assert_eq!(whole["port"], Value::Null);
    assert_eq!(whole["clients"], json!([]));
    assert!(whole["states"]["LISTEN"].as_u64().expect("listen") >= 1);
}

#[tokio::test]
async fn sysctl_audit_reads_the_configured_root() {
    let b = bed("sysctl");
    let root = b.dir.join("sys");
    std::fs::create_dir_all(root.join("net/ipv4")).expect("tree");
    std::fs::write(root.join("net/ipv4/tcp_syncookies"), "1\n").expect("value");
    let r = b.send(Req::get("/v1/sysctl").build()).await;
    assert_eq!(r.status, StatusCode::OK);
    let entries = r.json()["entries"].as_array().expect("entries").clone();
    assert!(entries.len() > 5);
    let cookies = entries
        .iter()
        .find(|e| e["key"] == "net.ipv4.tcp_syncookies")
        .expect("syncookies audited");
    assert_eq!(cookies["current"], "1");
    assert_eq!(cookies["status"], "ok");
    let absent = entries
        .iter()
        .find(|e| e["key"] == "net.core.somaxconn")
        .expect("somaxconn audited");
    assert_eq!(absent["status"], "absent");
}

// ---------------------------------------------------------------------------------------
// Writes

#[tokio::test]
async fn block_list_and_unblock() {
    let b = bed("blockflow");
    let r = b
        .send(
            Req::post(
                "/v1/blocklist",
                r#"{"cidr": "10.0.0.0/8", "ttl_secs": 600, "reason": "scanner"}"#,
            )
            .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        r.header(header::LOCATION),
        Some("/v1/blocklist/10.0.0.0%2F8")
    );
    let rec = r.json();
    assert_eq!(rec["cidr"], "10.0.0.0/8");
    assert_eq!(rec["reason"], "scanner");
    assert_eq!(rec["origin"], "manual");
    assert_eq!(
        rec["expires_at_ms"].as_u64().expect("expiry") - rec["created_at_ms"].as_u64().expect("t"),
        600_000
    );

    // No TTL: permanent, default reason; a bare address is a /32; IPv6 too.
    let r = b
        .send(Req::post("/v1/blocklist", r#"{"cidr": "192.0.2.7"}"#).build())
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let rec = r.json();
    assert_eq!(rec["cidr"], "192.0.2.7/32");
    assert_eq!(rec["expires_at_ms"], Value::Null);
    assert_eq!(rec["reason"], "manual");
    let r = b
        .send(
            Req::post(
                "/v1/blocklist",
                r#"{"cidr": "2001:db8:1::/48", "ttl_secs": null}"#,
            )
            .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        b.dp.lock().expect("dp").blocks[&b.net("2001:db8:1::/48")],
        u64::MAX
    );

    let list = b.send(Req::get("/v1/blocklist").build()).await.json();
    let cidrs: Vec<&str> = list["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["cidr"].as_str().expect("cidr"))
        .collect();
    assert_eq!(cidrs, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8:1::/48"]);

    // DELETE with the slash percent-encoded (either case), or a bare address.
    for (path, gone) in [
        ("/v1/blocklist/10.0.0.0%2F8", "10.0.0.0/8"),
        ("/v1/blocklist/192.0.2.7", "192.0.2.7/32"),
        ("/v1/blocklist/2001:db8:1::%2f48", "2001:db8:1::/48"),
    ] {
        let r = b.send(Req::delete(path).build()).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{path}: {}", r.text());
        assert!(r.body.is_empty());
        assert!(
            !b.dp.lock().expect("dp").blocks.contains_key(&b.net(gone)),
            "{gone} still in the dataplane"
        );
        b.send(Req::delete(path).build())
            .await
            .assert_error(StatusCode::NOT_FOUND, "not in the list");
    }
    assert!(b.guard.blocklist().is_empty());
}

#[tokio::test]
async fn allow_list_and_disallow() {
    let b = bed("allowflow");
    let r = b
        .send(
            Req::post(
                "/v1/allowlist",
                r#"{"cidr": "198.51.100.0/24", "note": "office"}"#,
            )
            .build(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        r.header(header::LOCATION),
        Some("/v1/allowlist/198.51.100.0%2F24")
    );
    let rec = r.json();
    assert_eq!(rec["cidr"], "198.51.100.0/24");
    assert_eq!(rec["note"], "office");
    assert_eq!(rec["origin"], "manual");
    let r = b
        .send(Req::post("/v1/allowlist", r#"{"cidr": "2001:db8::1"}"#).build())
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["note"], "");
    assert_eq!(b.dp.lock().expect("dp").allows.len(), 2);

    let list = b.send(Req::get("/v1/allowlist").build()).await.json();
    assert_eq!(list["entries"].as_array().expect("entries").len(), 2);

    // An allowed prefix cannot be blocked, nor anything overlapping it.
    b.send(Req::post("/v1/blocklist", r#"{"cidr": "198.51.100.9"}"#).build())
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "198.51.100.0/24");

    let r = b
        .send(Req::delete("/v1/allowlist/198.51.100.0%2F24").build())
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    b.send(Req::delete("/v1/allowlist/198.51.100.0%2F24").build())
        .await
        .assert_error(StatusCode::NOT_FOUND, "198.51.100.0/24");
    b.send(Req::delete("/v1/allowlist/2001:db8::1").build())
        .await;
    assert!(b.dp.lock().expect("dp").allows.is_empty());
    assert!(b.guard.allowlist().is_empty());
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let b = bed("badinput");
    seed(&b); // 192.0.2.9 blocked, 198.51.100.0/24 allowed
    let before = b.blocks();
    let allows_before = b.guard.allowlist();
    let huge_ttl = format!(
        r#"{{"cidr": "192.0.2.2", "ttl_secs": {}}}"#,
        api::MAX_TTL_SECS + 1
    );
    let long_reason = format!(
        r#"{{"cidr": "192.0.2.2", "reason": "{}"}}"#,
        "x".repeat(api::MAX_TEXT_CHARS + 1)
    );
    const BAD: u16 = 400;
    const UNPROCESSABLE: u16 = 422;
    let mut cases: Vec<(String, u16, &str)> = [
        (r#"{"cidr": "10.1.2.3/8"}"#, BAD, "10.0.0.0/8"),
        (r#"{"cidr": "2001:db8::1/48"}"#, BAD, "2001:db8::/48"),
        (r#"{"cidr": "not-an-ip"}"#, BAD, "not-an-ip"),
        (r#"{"cidr": "10.1.2.3/33"}"#, BAD, "10.1.2.3/33"),
        (r#"{"cidr": ""}"#, BAD, "not an IP"),
        (r#"{"cidr": "10.0.0.0/7"}"#, UNPROCESSABLE, "/8"),
        (r#"{"cidr": "0.0.0.0/0"}"#, UNPROCESSABLE, "broader"),
        (r#"{"cidr": "2001:db8::/31"}"#, UNPROCESSABLE, "/32"),
        (
            r#"{"cidr": "198.51.100.7"}"#,
            UNPROCESSABLE,
            "198.51.100.0/24",
        ),
        (r#"{"cidr": "198.51.0.0/16"}"#, UNPROCESSABLE, "allowlist"),
        (r#"{"cidr": "127.0.0.1"}"#, UNPROCESSABLE, "loopback"),
        (r#"{"cidr": "127.0.0.0/8"}"#, UNPROCESSABLE, "loopback"),
        (r#"{"cidr": "::1"}"#, UNPROCESSABLE, "loopback"),
        (r#"{"cidr": "192.0.2.2", "ttl_secs": 0}"#, BAD, "TTL"),
        (r#"{"cidr": "192.0.2.2", "ttl_secs": -5}"#, BAD, "ttl_secs"),
        (
            r#"{"cidr": "192.0.2.2", "ttl_secs": "600"}"#,
            BAD,
            "ttl_secs",
        ),
        (r#"{"cidr": "192.0.2.2", "ttl_secs": 1.5}"#, BAD, "ttl_secs"),
        (
            r#"{"cidr": "192.0.2.2", "ttl": 60}"#,
            BAD,
            "unknown field `ttl`",
        ),
        (r#"{"cidr": 5}"#, BAD, "cidr"),
        (r#"{"reason": "no cidr"}"#, BAD, "missing field `cidr`"),
        (r#"{}"#, BAD, "cidr"),
        (r#"[]"#, BAD, "deserialize"),
        (r#"{"cidr": "192.0.2.2""#, BAD, "JSON"),
        ("{not json", BAD, "JSON"),
        ("", BAD, "JSON"),
        (
            r#"{"cidr": "192.0.2.2", "reason": "a\nb"}"#,
            BAD,
            "control characters",
        ),
    ]
    .into_iter()
    .map(|(body, status, needle)| (body.to_string(), status, needle))
    .collect();
    cases.push((huge_ttl, BAD, "TTL"));
    cases.push((long_reason, BAD, "longer than"));
    for (body, status, needle) in &cases {
        let status = StatusCode::from_u16(*status).expect("status");
        b.send(Req::post("/v1/blocklist", body.clone()).build())
            .await
            .assert_error(status, needle);
        assert_eq!(b.blocks(), before, "{body} changed the blocklist");
    }
    // The host-bits message names the canonical form.
    let msg = b
        .send(Req::post("/v1/blocklist", r#"{"cidr": "10.1.2.3/8"}"#).build())
        .await
        .assert_error(StatusCode::BAD_REQUEST, "host bits");
    assert!(msg.contains("the prefix is 10.0.0.0/8"), "{msg}");

    // Valid JSON, but not labelled as JSON.
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        b.send(
            Req::post("/v1/blocklist", r#"{"cidr": "192.0.2.2"}"#)
                .content_type(ct)
                .build(),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "Content-Type: application/json");
    }
    // Bad DELETEs.
    for (path, status, needle) in [
        (
            "/v1/blocklist/10.1.2.3%2F8",
            StatusCode::BAD_REQUEST,
            "10.0.0.0/8",
        ),
        ("/v1/blocklist/nope", StatusCode::BAD_REQUEST, "not an IP"),
        ("/v1/blocklist/%FF", StatusCode::BAD_REQUEST, ""),
        (
            "/v1/blocklist/192.0.2.99",
            StatusCode::NOT_FOUND,
            "192.0.2.99/32",
        ),
        (
            "/v1/allowlist/198.51.100.1%2F24",
            StatusCode::BAD_REQUEST,
            "198.51.100.0/24",
        ),
        (
            "/v1/allowlist/192.0.2.99",
            StatusCode::NOT_FOUND,
            "not in the list",
        ),
    ] {
        b.send(Req::delete(path).build())
            .await
            .assert_error(status, needle);
    }
    // Bad allow requests.
    for (body, needle) in [
        (r#"{"cidr": "198.51.100.1/24"}"#, "198.51.100.0/24"),
        (r#"{"cidr": "x"}"#, "not an IP"),
        (
            r#"{"cidr": "192.0.2.0/24", "reason": "wrong field"}"#,
            "unknown field",
        ),
        (
            r#"{"cidr": "192.0.2.0/24", "note": "tab\there"}"#,
            "control",
        ),
    ] {
        b.send(Req::post("/v1/allowlist", body).build())
            .await
            .assert_error(StatusCode::BAD_REQUEST, needle);
    }
    assert_eq!(b.blocks(), before);
    assert_eq!(b.guard.allowlist(), allows_before);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let b = bed_with("toolarge", 100_000, 256);
    let before = b.blocks();
    let big = format!(
        r#"{{"cidr": "192.0.2.2", "reason": "{}"}}"#,
        "x".repeat(300)
    );
    for path in ["/v1/blocklist", "/v1/allowlist"] {
        b.send(Req::post(path, big.clone()).build())
            .await
            .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "256 bytes");
        // Declared larger than the limit: refused before it is read.
        let declared = Req::post(path, big.clone())
            .header("content-length", big.len().to_string())
            .build();
        b.send(declared)
            .await
            .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "limit");
    }
    assert_eq!(b.blocks(), before);
    // Just under the limit is fine.
    let r = b
        .send(Req::post("/v1/blocklist", r#"{"cidr": "192.0.2.2"}"#).build())
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn full_blocklist_is_507() {
    let b = bed("full");
    b.dp.lock().expect("dp").capacity = 1;
    let r = b
        .send(Req::post("/v1/blocklist", r#"{"cidr": "192.0.2.1"}"#).build())
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let before = b.blocks();
    b.send(Req::post("/v1/blocklist", r#"{"cidr": "192.0.2.2"}"#).build())
        .await
        .assert_error(StatusCode::INSUFFICIENT_STORAGE, "full");
    assert_eq!(b.blocks(), before);
    // Replacing the existing entry still works when full.
    let r = b
        .send(Req::post("/v1/blocklist", r#"{"cidr": "192.0.2.1", "ttl_secs": 60}"#).build())
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

/// A batch is all or nothing: the first entry that fails is named by its position, with
/// the status a single block would get, and nothing of the batch is applied.
#[tokio::test]
async fn a_batch_blocks_all_or_nothing() {
    let b = bed("batch");
    seed(&b);
    let batch = |body: &str| Req::post("/v1/blocklist/batch", body).build();
    let r = b
        .send(batch(
            r#"{"cidrs": ["192.0.2.1", "192.0.2.128/25", "2001:db8:7::/48", "192.0.2.1"], "ttl_secs": 60, "reason": "feed"}"#,
        ))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let entries = r.json()["entries"].as_array().expect("entries").clone();
    assert_eq!(
        entries.len(),
        3,
        "the duplicate is blocked once: {entries:?}"
    );
    assert!(entries.iter().all(|e| e["reason"] == "feed"));
    for c in ["192.0.2.1/32", "192.0.2.128/25", "2001:db8:7::/48"] {
        assert!(
            b.dp.lock().expect("dp").blocks.contains_key(&b.net(c)),
            "{c}"
        );
    }

    let before = b.blocks();
    for (body, status, needle) in [
        (
            r#"{"cidrs": ["203.0.113.1", "203.0.113.2", "198.51.100.7"]}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "entry 2 of the batch: 198.51.100.7/32 overlaps the allowlist",
        ),
        (
            r#"{"cidrs": ["203.0.113.1", "203.0.113.300"]}"#,
            StatusCode::BAD_REQUEST,
            "entry 1 of the batch",
        ),
        (
            r#"{"cidrs": ["203.0.113.1"], "ttl_secs": 0}"#,
            StatusCode::BAD_REQUEST,
            "TTL",
        ),
        (r#"{"cidrs": []}"#, StatusCode::BAD_REQUEST, "1 to 10000"),
        (
            r#"{"cidr": "203.0.113.1"}"#,
            StatusCode::BAD_REQUEST,
            "cidr",
        ),
    ] {
        b.send(batch(body)).await.assert_error(status, needle);
        assert_eq!(b.blocks(), before, "{body}");
    }

    // Full part-way: the blocks written before the full one are taken back.
    let free = b.dp.lock().expect("dp").blocks.len() + 2;
    b.dp.lock().expect("dp").capacity = free;
    b.send(batch(
        r#"{"cidrs": ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"]}"#,
    ))
    .await
    .assert_error(StatusCode::INSUFFICIENT_STORAGE, "entry 2 of the batch");
    assert_eq!(b.blocks(), before);
    // And nothing of it reached the disk: a restart sees the same list.
    assert_eq!(bed_in(b.dir.clone(), 100_000, 16_384).blocks().0, before.0);
}

#[tokio::test]
async fn storage_failures_are_500_without_details() {
    let first = bed("persistfail");
    seed(&first);
    // A restart: the seeded state is in the snapshot, and the journal is not open.
    let b = bed_in(first.dir.clone(), 100_000, 16_384);
    let before = b.blocks();
    // Make the journal unwritable: a directory where it must be created.
    std::fs::remove_file(b.dir.join("state.journal")).expect("empty journal");
    std::fs::create_dir_all(b.dir.join("state.journal")).expect("obstacle");
    for req in [
        Req::post("/v1/blocklist", r#"{"cidr": "192.0.2.2"}"#),
        Req::post(
            "/v1/blocklist/batch",
            r#"{"cidrs": ["192.0.2.2", "192.0.2.3"]}"#,
        ),
        Req::delete("/v1/blocklist/192.0.2.9"),
        Req::post("/v1/allowlist", r#"{"cidr": "203.0.113.0/24"}"#),
        Req::delete("/v1/allowlist/198.51.100.0%2F24"),
    ] {
        let r = b.send(req.build()).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.json(), json!({"error": INTERNAL_ERROR}));
        let text = r.text();
        for secret in ["state.j", "xg-api", "os error", "directory"] {
            assert!(!text.contains(secret), "leaks {secret}: {text}");
        }
    }
    assert_eq!(b.blocks(), before, "rolled back");
}

#[tokio::test(start_paused = true)]
async fn writes_are_limited_per_peer_whatever_x_forwarded_for_says() {
    let b = bed_with("ratelimit", 3, 16_384);
    let a = "192.0.2.50:40000";
    let post = |n: u32, peer: &str| {
        Req::post("/v1/blocklist", format!(r#"{{"cidr": "203.0.113.{n}"}}"#))
            .peer(peer)
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .header("x-real-ip", format!("198.51.100.{n}"))
            .header("forwarded", format!("for=198.51.100.{n}"))
    };
    for n in 1..=3 {
        let r = b.send(post(n, a).build()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    let before = b.blocks();
    // A fresh X-Forwarded-For each time, another source port: still the same client.
    for (n, peer) in [
        (4, a),
        (5, "192.0.2.50:40001"),
        (6, "[::ffff:192.0.2.50]:40002"),
    ] {
        let r = b.send(post(n, peer).build()).await;
        r.assert_error(StatusCode::TOO_MANY_REQUESTS, "retry in 20 s");
        assert_eq!(r.header(header::RETRY_AFTER), Some("20"));
    }
    let r = b
        .send(Req::delete("/v1/blocklist/203.0.113.1").peer(a).build())
        .await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "too many");
    assert_eq!(b.blocks(), before, "limited requests changed nothing");

    // Reads are not limited; a request without the token is refused before the limit
    // (and so cannot spend anyone's bucket).
    let r = b.send(Req::get("/v1/blocklist").peer(a).build()).await;
    assert_eq!(r.status, StatusCode::OK);
    b.send(post(7, a).token(None).build())
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "token");

    // Other peers, and requests with no peer at all, have buckets of their own.
    let r = b.send(post(8, "198.51.100.9:1234").build()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = b.send(post(9, "[2001:db8::5]:1234").build()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let anonymous = Req::post("/v1/blocklist", r#"{"cidr": "203.0.113.10"}"#).build();
    assert_eq!(b.send(anonymous).await.status, StatusCode::CREATED);

    // One token back every 20 s.
    tokio::time::advance(Duration::from_secs(19)).await;
    let r = b.send(post(11, a).build()).await;
    assert_eq!(r.header(header::RETRY_AFTER), Some("1"));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        b.send(post(12, a).build()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        b.send(post(13, a).build()).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

// ---------------------------------------------------------------------------------------
// The token file

#[test]
fn token_is_created_private_then_reused() {
    let dir = temp_dir("token");
    let path = dir.join("etc/xdp-guard/api.token");
    let token = api::load_or_create_token(&path).expect("created");
    assert_eq!(token.len(), api::TOKEN_BYTES * 2);
    assert!(
        token
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    let text = std::fs::read_to_string(&path).expect("file");
    assert_eq!(text, format!("{token}\n"));
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(api::load_or_create_token(&path).expect("reused"), token);
    let other = api::load_or_create_token(&dir.join("second.token")).expect("second");
    assert_ne!(other, token, "tokens are random");

    // An operator's own token, with surrounding whitespace.
    let own = dir.join("own.token");
    std::fs::write(&own, "  my-own-token-value-with-enough-length \n").expect("write");
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    assert_eq!(
        api::load_or_create_token(&own).expect("own"),
        "my-own-token-value-with-enough-length"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unsafe_token_files_are_refused_by_name() {
    let dir = temp_dir("badtoken");
    let write = |name: &str, text: &str, mode: u32| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    };
    let open = write("group.token", TOKEN, 0o640);
    let e = api::load_or_create_token(&open).expect_err("group-readable");
    assert!(
        matches!(e, TokenError::Permissive { mode: 0o640, .. }),
        "{e}"
    );
    assert!(e.to_string().contains(&*open.to_string_lossy()), "{e}");
    assert!(e.to_string().contains("chmod 600"), "{e}");
    let world = write("world.token", TOKEN, 0o604);
    assert!(matches!(
        api::load_or_create_token(&world),
        Err(TokenError::Permissive { .. })
    ));
    let exec = write("exec.token", TOKEN, 0o610);
    assert!(matches!(
        api::load_or_create_token(&exec),
        Err(TokenError::Permissive { .. })
    ));
    for (name, text) in [("empty.token", ""), ("blank.token", " \n\t\n")] {
        let p = write(name, text, 0o600);
        let e = api::load_or_create_token(&p).expect_err("empty");
        assert!(matches!(e, TokenError::Empty { .. }), "{e}");
        assert!(e.to_string().contains(name), "{e}");
    }
    let spaced = write("spaced.token", "two words\n", 0o600);
    assert!(matches!(
        api::load_or_create_token(&spaced),
        Err(TokenError::Malformed { .. })
    ));
    // The parent is a file: refused, naming the path.
    let blocker = write("file", "x", 0o600);
    let e = api::load_or_create_token(&blocker.join("api.token")).expect_err("no dir");
    assert!(matches!(e, TokenError::Read { .. }), "{e}");
    assert!(e.to_string().contains("api.token"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// A real socket

async fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn serves_on_a_socket_and_shuts_down_gracefully() {
    let b = bed_with("socket", 1, 16_384);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, b.app.clone(), async move {
        let _ = stopped.await;
    }));

    let health = raw_http(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.contains(r#""status":"ok""#), "{health}");

    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let r = client
        .get(format!("{base}/v1/stats"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 401);
    let r = client
        .post(format!("{base}/v1/blocklist"))
        .bearer_auth(TOKEN)
        .json(&json!({"cidr": "192.0.2.44", "ttl_secs": 60}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 201);
    let rec: Value = r.json().await.expect("json");
    assert_eq!(rec["cidr"], "192.0.2.44/32");
    // The limit (1/min) is keyed on the real peer address the server saw.
    let r = client
        .post(format!("{base}/v1/blocklist"))
        .bearer_auth(TOKEN)
        .header("x-forwarded-for", "203.0.113.1")
        .json(&json!({"cidr": "192.0.2.45"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("60")
    );

    // An idle keep-alive connection does not hold the shutdown up.
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));

    stop.send(()).expect("server running");
    let result = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("shut down in time")
        .expect("server task");
    assert!(result.is_ok(), "{result:?}");
    drop(client);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
    assert_eq!(b.guard.blocklist().len(), 1);
}
