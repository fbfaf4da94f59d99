//! A scripted API server for tower-test scenarios (the kube-rs controller-rs
//! `ApiServerVerifier` pattern): the code under test gets a [`kube::Client`]
//! whose every request arrives here; the scenario states, in order, the
//! requests it expects (method and path) and what the "server" answers, and
//! gets each request back to assert on its query and body.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The scripted server side of a mock [`Client`].
pub struct ApiServerVerifier {
    handle: Handle,
    /// Every request handled so far, in order.
    pub seen: Vec<Seen>,
    hung: Vec<tower_test::mock::SendResponse<Response<Body>>>,
}

/// A request the verifier handled.
#[derive(Clone, Debug)]
pub struct Seen {
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// The query string (`""` when none).
    pub query: String,
    /// The JSON body (`Null` when empty).
    pub body: serde_json::Value,
}

impl Seen {
    /// The value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| {
                v.replace("%2F", "/")
                    .replace("%3D", "=")
                    .replace("%2C", ",")
            })
        })
    }
}

/// What the scripted server answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with this JSON.
    Ok(serde_json::Value),
    /// 201 with this JSON.
    Created(serde_json::Value),
    /// 200 echoing the request body (what SSA/replace/patch return, roughly).
    Echo,
    /// An API `Status` error with this code and reason (e.g. 409 `Conflict`).
    Status(u16, &'static str),
    /// A plain-text error body, not a `Status`: what a real API server
    /// answers for a path it does not serve (`404 page not found`).
    Text(u16, &'static str),
}

/// What an empty API server answers: lists are empty (the optional
/// `monitoring.coreos.com` API is not served: a plain-text 404, as a real
/// kube-apiserver answers an unserved path), single objects do not
/// exist, writes succeed echoing their body.
pub fn default_reply(seen: &Seen) -> Reply {
    // Every list pgcluster makes is filtered by a label selector.
    let is_list = seen.query.contains("labelSelector");
    match seen.method {
        Method::GET if seen.path.starts_with("/apis/monitoring.coreos.com/") => not_served(),
        Method::GET if is_list => empty_list("List"),
        Method::GET => not_found(),
        Method::POST => Reply::Created(seen.body.clone()),
        // Writes to the cluster object or its status return the object.
        _ if seen.path.contains("/postgresclusters/") => Reply::Ok(
            serde_json::to_value(super::objects::postgres_cluster()).expect("fixtures serialize"),
        ),
        Method::DELETE => Reply::Ok(
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ),
        _ => Reply::Echo,
    }
}

/// A 404 NotFound reply.
pub fn not_found() -> Reply {
    Reply::Status(404, "NotFound")
}

/// The reply to a path the API server does not serve (a CRD not installed):
/// plain text, checked against kube-apiserver 1.35 by the e2e tests.
pub fn not_served() -> Reply {
    Reply::Text(404, "404 page not found")
}

/// A 409 Conflict reply (resourceVersion mismatch).
pub fn conflict() -> Reply {
    Reply::Status(409, "Conflict")
}

/// A 409 AlreadyExists reply (create of an existing name).
pub fn already_exists() -> Reply {
    Reply::Status(409, "AlreadyExists")
}

/// An empty list of `kind` (`PodList`, ...).
pub fn empty_list(kind: &str) -> Reply {
    Reply::Ok(list(kind, vec![]))
}

/// A list object of `kind` with `items`.
pub fn list(kind: &str, items: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": kind, "metadata": { "resourceVersion": "1" }, "items": items
    })
}

impl ApiServerVerifier {
    /// A mock client (default namespace `default`) and its scripted server.
    pub fn new() -> (Client, Self) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        (
            Client::new(service, "default"),
            Self {
                handle,
                seen: vec![],
                hung: vec![],
            },
        )
    }

    /// Waits for the next request, asserts its method and path, answers
    /// `reply` and returns what was seen.
    pub async fn expect(&mut self, method: Method, path: &str, reply: Reply) -> Seen {
        let next = tokio::time::timeout(Duration::from_secs(5), self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {method} {path}"));
        let (request, send) = next.unwrap_or_else(|| panic!("client gone before {method} {path}"));
        let seen = Self::record(request).await;
        assert_eq!(
            (&seen.method, seen.path.as_str()),
            (&method, path),
            "unexpected request (query {:?}, body {})",
            seen.query,
            seen.body
        );
        send.send_response(Self::response(&reply, &seen));
        self.seen.push(seen.clone());
        seen
    }

    /// Drives `fut` (the code under test) while answering every request it
    /// makes: the first matching entry of `overrides` (method and exact path;
    /// each used once) or else [`default_reply`]. Returns the future's
    /// output; the requests are in [`Self::seen`], in order.
    pub async fn serve_while<F: std::future::Future>(
        &mut self,
        fut: F,
        overrides: Vec<(Method, String, Reply)>,
    ) -> F::Output {
        let mut overrides = overrides;
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return out,
                next = self.handle.next_request() => {
                    let (request, send) = next.expect("the mock client lives as long as the future");
                    let seen = Self::record(request).await;
                    let reply = match overrides
                        .iter()
                        .position(|(m, p, _)| *m == seen.method && *p == seen.path)
                    {
                        Some(i) => overrides.remove(i).2,
                        None => default_reply(&seen),
                    };
                    send.send_response(Self::response(&reply, &seen));
                    self.seen.push(seen);
                }
            }
        }
    }

    /// `(method, path)` of every request seen, in order.
    pub fn calls(&self) -> Vec<(String, String)> {
        self.seen
            .iter()
            .map(|s| (s.method.to_string(), s.path.clone()))
            .collect()
    }

    /// Receives the next request and never answers it (a hung API server);
    /// the request is kept pending until the verifier is dropped.
    pub async fn hang_next(&mut self) -> Seen {
        let (request, send) = self
            .handle
            .next_request()
            .await
            .expect("the mock client is alive");
        let seen = Self::record(request).await;
        self.hung.push(send);
        seen
    }

    /// Asserts that no request arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Ok(Some((request, _send))) =
            tokio::time::timeout(wait, self.handle.next_request()).await
        {
            let seen = Self::record(request).await;
            panic!(
                "unexpected request {} {}?{} {}",
                seen.method, seen.path, seen.query, seen.body
            );
        }
    }

    async fn record(request: Request<Body>) -> Seen {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("mock request bodies are in memory");
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("the client sends JSON bodies")
        };
        Seen {
            method,
            path,
            query,
            body,
        }
    }

    fn response(reply: &Reply, seen: &Seen) -> Response<Body> {
        if let Reply::Text(code, text) = reply {
            return Response::builder()
                .status(StatusCode::from_u16(*code).expect("mock status codes are valid"))
                .header("content-type", "text/plain; charset=utf-8")
                .body(Body::from(format!("{text}\n").into_bytes()))
                .expect("mock responses are well-formed");
        }
        let (code, json) = match reply {
            Reply::Ok(v) => (200, v.clone()),
            Reply::Created(v) => (201, v.clone()),
            Reply::Echo => (200, seen.body.clone()),
            Reply::Text(..) => unreachable!("answered above"),
            Reply::Status(code, reason) => (
                *code,
                serde_json::json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": format!("mock {reason}"),
                    "reason": reason, "code": code
                }),
            ),
        };
        Response::builder()
            .status(StatusCode::from_u16(code).expect("mock status codes are valid"))
            .body(Body::from(
                serde_json::to_vec(&json).expect("mock replies serialize"),
            ))
            .expect("mock responses are well-formed")
    }
}
