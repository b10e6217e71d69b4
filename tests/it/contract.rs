//! The OpenAPI description against real answers: every documented operation is called on
//! the running service, and every JSON body must match the schema the spec gives for its
//! status, with no property the spec does not name.

use crate::support::{Api, TestApp, event, poll, window};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// The spec as the service serves it, and the operations whose answers were checked.
struct Contract {
    spec: Value,
    checked: BTreeSet<(String, String)>,
}

impl Contract {
    async fn of(app: &TestApp) -> Self {
        Self { spec: app.get_json("/openapi.json").await, checked: BTreeSet::new() }
    }

    /// Checks `response` against the spec's entry for `method` on the path template
    /// `template` and returns its JSON body (`Null` for other bodies).
    async fn check(&mut self, method: Method, template: &str, response: reqwest::Response) -> Value {
        let status = response.status();
        let what = format!("{method} {template} → {status}");
        let operation = &self.spec["paths"][template][method.as_str().to_lowercase()];
        assert!(operation.is_object(), "{what}: the spec has no such operation");
        let documented = &operation["responses"][status.as_str()];
        assert!(documented.is_object(), "{what}: the spec does not document this status");
        self.checked.insert((method.to_string(), template.to_owned()));
        if method == Method::HEAD {
            let bytes = response.bytes().await.unwrap();
            assert!(bytes.is_empty(), "{what}: a body on HEAD");
            return Value::Null;
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or_default().trim().to_owned());
        let Some(content) = documented["content"].as_object() else {
            let bytes = response.bytes().await.unwrap();
            assert!(bytes.is_empty(), "{what}: the spec documents no body, the service sent {bytes:?}");
            return Value::Null;
        };
        let content_type = content_type.unwrap_or_else(|| panic!("{what}: a body without a Content-Type"));
        let media = content.get(&content_type).unwrap_or_else(|| {
            panic!("{what}: the spec documents {:?}, the service sent {content_type}", content.keys())
        });
        // Streams and text are checked by their type; reading a live tail would not end.
        if content_type != "application/json" {
            return Value::Null;
        }
        let bytes = response.bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|error| panic!("{what}: not JSON: {error}"));
        let schema = media["schema"].clone();
        if schema.is_null() && body["openapi"].is_string() {
            // The spec itself, described by the OpenAPI standard rather than by itself.
            return body;
        }
        assert!(!schema.is_null(), "{what}: the spec gives JSON without a schema");
        let errors = self.violations(schema, &body);
        assert!(errors.is_empty(), "{what}: the body does not match the spec:\n{}\n{body:#}", errors.join("\n"));
        body
    }

    /// Where `body` departs from `schema`, closed against undocumented properties.
    fn violations(&self, schema: Value, body: &Value) -> Vec<String> {
        let schema = closed(inlined(schema, &self.spec["components"]["schemas"]), false);
        let validator = jsonschema::validator_for(&schema).expect("the spec's schema compiles");
        validator.iter_errors(body).map(|error| format!("{} at {}", error, error.instance_path())).collect()
    }

    fn response_schema(&self, method: &str, template: &str, status: &str) -> Value {
        self.spec["paths"][template][method]["responses"][status]["content"]["application/json"]["schema"].clone()
    }

    /// Every documented operation with a JSON answer was checked at least once.
    fn assert_every_operation_checked(&self) {
        let documented: BTreeSet<(String, String)> = self.spec["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object().unwrap().keys().map(|method| (method.to_uppercase(), path.clone()))
            })
            .collect();
        let unchecked: Vec<_> = documented.difference(&self.checked).collect();
        assert!(unchecked.is_empty(), "operations no test called: {unchecked:?}");
    }
}

/// `schema` with every `#/components/schemas/…` reference replaced by its target, so each
/// place a type is used can be closed on its own.
fn inlined(schema: Value, components: &Value) -> Value {
    match schema {
        Value::Object(object) => {
            if let Some(name) = object.get("$ref").and_then(Value::as_str) {
                let name = name.strip_prefix("#/components/schemas/").expect("a component reference");
                return inlined(components[name].clone(), components);
            }
            Value::Object(object.into_iter().map(|(key, value)| (key, inlined(value, components))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(|item| inlined(item, components)).collect()),
        other => other,
    }
}

/// `schema` refusing properties it does not name. The members of an `allOf` (a flattened
/// struct) stay open; the `allOf` itself is closed over what its members name.
fn closed(schema: Value, in_all_of: bool) -> Value {
    let Value::Object(object) = schema else {
        return match schema {
            Value::Array(items) => Value::Array(items.into_iter().map(|item| closed(item, false)).collect()),
            other => other,
        };
    };
    let all_of = object.contains_key("allOf");
    let mut closed_object: Map<String, Value> = object
        .into_iter()
        .map(|(key, value)| {
            let value = match (key.as_str(), value) {
                ("allOf", Value::Array(members)) => {
                    Value::Array(members.into_iter().map(|member| closed(member, true)).collect())
                }
                // Property names and examples are data, not schemas.
                ("properties", Value::Object(properties)) => Value::Object(
                    properties.into_iter().map(|(name, property)| (name, closed(property, false))).collect(),
                ),
                ("example" | "examples" | "enum" | "required", value) => value,
                (_, value) => closed(value, false),
            };
            (key, value)
        })
        .collect();
    if all_of {
        closed_object.insert("unevaluatedProperties".into(), Value::Bool(false));
    } else if closed_object.contains_key("properties")
        && !in_all_of
        && !closed_object.contains_key("additionalProperties")
    {
        closed_object.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(closed_object)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_answers_as_the_spec_describes() {
    // Markup kept, so a NUL reaches PostgreSQL and makes a dead letter.
    let app = TestApp::spawn_with(|settings| {
        settings.ingest.sanitize = aurore_domain::Markup::Off;
        // One field sealed, so `POST /admin/decrypt` has something to open.
        settings.privacy = serde_json::from_value(json!({
            "rules": [{"field": "metadata.passport", "action": "encrypt"}],
            "encryption_key_id": "k1",
            "encryption_keys": {"k1": "S2V5T2ZUaGlydHlUd29CeXRlc0Zvckx1Y2tMdWNrISE="},
        }))
        .unwrap();
    })
    .await;
    let mut contract = Contract::of(&app).await;
    let (from, to) = window();

    let single = app.post_json(&event("contract", "one")).await;
    let receipt = contract.check(Method::POST, "/events", single).await;
    assert!(receipt["event_id"].is_string(), "{receipt}");
    let batch = json!([event("contract", "two"), event("contract", "three"), {"service": "contract"}]);
    let receipt = contract.check(Method::POST, "/events", app.post_json(&batch).await).await;
    assert_eq!(receipt["rejected"], 1, "{receipt}");
    let invalid = contract.check(Method::POST, "/events", app.post_json(&json!({"service": "x"})).await).await;
    assert_eq!(invalid["errorCode"], "INVALID_EVENT");
    let none_valid = app.post_json(&json!([{"service": "x"}, 1])).await;
    assert!(contract.check(Method::POST, "/events", none_valid).await["rejected"].is_array());
    let text = app.client.post(format!("{}/events", app.address)).header("content-type", "text/plain").body("x");
    contract.check(Method::POST, "/events", text.send().await.unwrap()).await;
    let poison = app.post_json(&event("poison", "nul \u{0} inside")).await;
    contract.check(Method::POST, "/events", poison).await;

    let stored = "SELECT count(*) AS n FROM events WHERE service = 'contract'";
    assert_eq!(app.database.wait_for_count(stored, 3, Duration::from_secs(10)).await, 3);
    let range = format!("service=contract&from={from}&to={to}");
    let page = contract.check(Method::GET, "/events", app.get(&format!("/events?{range}&pageSize=2")).await).await;
    let cursor = page["next_cursor"].as_str().expect("a second page").to_owned();
    let cursor_page = app.get(&format!("/events?{range}&pageSize=2&cursor={cursor}")).await;
    let cursor_page = contract.check(Method::GET, "/events", cursor_page).await;
    assert!(cursor_page["total"].is_null(), "a cursor page is not counted: {cursor_page}");
    contract.check(Method::GET, "/events", app.get("/events?service=contract").await).await;
    contract.check(Method::GET, "/events/export", app.get(&format!("/events/export?{range}")).await).await;
    contract.check(Method::GET, "/events/export", app.get("/events/export?service=contract").await).await;
    let histogram = app.get(&format!("/events/histogram?{range}&interval=1h")).await;
    assert_eq!(contract.check(Method::GET, "/events/histogram", histogram).await["total"], 3);
    contract.check(Method::GET, "/events/histogram", app.get(&format!("/events/histogram?{range}")).await).await;
    let services = contract.check(Method::GET, "/services", app.get("/services").await).await;
    let contract_service = services["services"].as_array().unwrap().iter().find(|entry| entry["service"] == "contract");
    assert_eq!(contract_service.map(|entry| entry["events"].clone()), Some(serde_json::json!(3)), "{services}");
    // The stream's headers are enough; dropping the response closes it.
    contract.check(Method::GET, "/events/tail", app.get("/events/tail?service=contract").await).await;
    contract.check(Method::GET, "/events/tail", app.get("/events/tail").await).await;

    let probe = || async { app.get_json("/dlq?service=poison").await };
    let listed = poll(Duration::from_secs(10), probe, |listed| listed["total"] == 1).await;
    let id = listed["events"][0]["id"].as_str().expect("a dead letter").to_owned();
    contract.check(Method::GET, "/dlq", app.get("/dlq?service=poison").await).await;
    contract.check(Method::GET, "/dlq", app.get("/dlq?limit=0").await).await;
    contract.check(Method::GET, "/dlq/statistics", app.get("/dlq/statistics").await).await;
    let entry = contract.check(Method::GET, "/dlq/{id}", app.get(&format!("/dlq/{id}")).await).await;
    assert_eq!(entry["originalEvent"]["message"], "nul \u{0} inside");
    contract.check(Method::GET, "/dlq/{id}", app.get("/dlq/not-an-id").await).await;
    let reprocess = format!("/dlq/{id}/reprocess");
    contract.check(Method::PATCH, "/dlq/{id}/reprocess", app.call(Method::PATCH, &reprocess).await).await;
    contract.check(Method::PATCH, "/dlq/{id}/reprocess", app.call(Method::PATCH, &reprocess).await).await;
    contract.check(Method::DELETE, "/dlq/{id}", app.call(Method::DELETE, &format!("/dlq/{id}")).await).await;
    contract.check(Method::DELETE, "/dlq/{id}", app.call(Method::DELETE, &format!("/dlq/{id}")).await).await;
    let retention = app.call(Method::POST, "/admin/retention/run").await;
    contract.check(Method::POST, "/admin/retention/run", retention).await;
    contract.check(Method::GET, "/privacy", app.get("/privacy").await).await;
    let erase = |query: &str| app.client.post(format!("{}/admin/erase{query}", app.address));
    let erased =
        contract.check(Method::POST, "/admin/erase", erase("?metadata.user_id=nobody").send().await.unwrap()).await;
    assert_eq!(erased["events"], 0, "{erased}");
    let by_body = erase("").json(&json!({"service": "contract", "q": "nobody"})).send().await.unwrap();
    contract.check(Method::POST, "/admin/erase", by_body).await;
    let unfiltered =
        contract.check(Method::POST, "/admin/erase", erase("?service=contract").send().await.unwrap()).await;
    assert_eq!(unfiltered["statusCode"], 400, "{unfiltered}");
    let trail = contract.check(Method::GET, "/admin/erasures", app.get("/admin/erasures?limit=10").await).await;
    assert_eq!(trail["erasures"].as_array().map(Vec::len), Some(2), "{trail}");
    contract.check(Method::GET, "/admin/erasures", app.get("/admin/erasures?limit=0").await).await;
    let decrypt =
        |value: &Value| app.client.post(format!("{}/admin/decrypt", app.address)).json(&json!({"value": value}));
    let refused = contract.check(Method::POST, "/admin/decrypt", decrypt(&json!("plain")).send().await.unwrap()).await;
    assert_eq!(refused["statusCode"], 400, "not an encrypted value: {refused}");
    let mut sealed = event("contract", "sealed");
    sealed["metadata"] = json!({"passport": "P1234567"});
    assert_eq!(app.post_json(&sealed).await.status(), StatusCode::ACCEPTED);
    let sealed_page = format!("/events?{range}&q=sealed");
    let found = poll(
        Duration::from_secs(10),
        || app.get_json(&sealed_page),
        |page| page["events"].as_array().is_some_and(|events| !events.is_empty()),
    )
    .await;
    let passport = &found["events"][0]["metadata"]["passport"];
    assert!(passport.as_str().is_some_and(|sealed| sealed.starts_with("enc:k1:")), "{found}");
    let opened = contract.check(Method::POST, "/admin/decrypt", decrypt(passport).send().await.unwrap()).await;
    assert_eq!(opened["value"], "P1234567");

    for path in [
        "/health",
        "/health/ready",
        "/ready",
        "/health/live",
        "/live",
        "/health/database",
        "/health/buffer",
        "/health/detailed",
        "/health/business",
        "/metrics",
        "/metrics/prometheus",
        "/openapi.json",
        "/api-json",
    ] {
        contract.check(Method::GET, path, app.get(path).await).await;
    }
    let summary = app.client.get(format!("{}/metrics", app.address)).header("accept", "application/json");
    let summary = contract.check(Method::GET, "/metrics", summary.send().await.unwrap()).await;
    assert!(summary["buffer_capacity"].is_u64(), "{summary}");
    check_shipper_protocols(&app, &mut contract).await;
    contract.assert_every_operation_checked();
}

/// The shippers' protocols and the query explainer, each answer against the spec.
async fn check_shipper_protocols(app: &TestApp, contract: &mut Contract) {
    let post = |path: &str, content_type: &str, body: Vec<u8>| {
        app.client.post(format!("{}{path}", app.address)).header("content-type", content_type).body(body).send()
    };
    let now = chrono::Utc::now();
    let nanos = now.timestamp_nanos_opt().unwrap().to_string();
    let otlp = json!({"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "contract"}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": nanos, "body": {"stringValue": "otlp"}}, {"timeUnixNano": nanos}]}]}]});
    let logs = post("/v1/logs", "application/json", otlp.to_string().into_bytes()).await.unwrap();
    let logs = contract.check(Method::POST, "/v1/logs", logs).await;
    assert_eq!(logs["partialSuccess"]["rejectedLogRecords"], "1", "{logs}");
    contract.check(Method::POST, "/v1/logs", post("/v1/logs", "application/x-protobuf", vec![]).await.unwrap()).await;
    contract.check(Method::POST, "/v1/logs", post("/v1/logs", "application/json", b"{".to_vec()).await.unwrap()).await;
    contract.check(Method::POST, "/v1/logs", post("/v1/logs", "text/plain", b"x".to_vec()).await.unwrap()).await;

    let loki = json!({"streams": [{"stream": {"service": "contract"}, "values": [[nanos, "loki"]]}]});
    let pushed = post("/loki/api/v1/push", "application/json", loki.to_string().into_bytes()).await.unwrap();
    contract.check(Method::POST, "/loki/api/v1/push", pushed).await;
    let half = json!({"streams": [{"stream": {"service": "contract"}, "values": [[nanos, ""]]}]});
    let refused = post("/loki/api/v1/push", "application/json", half.to_string().into_bytes()).await.unwrap();
    contract.check(Method::POST, "/loki/api/v1/push", refused).await;
    let malformed = post("/loki/api/v1/push", "application/json", b"[]".to_vec()).await.unwrap();
    contract.check(Method::POST, "/loki/api/v1/push", malformed).await;

    let bulk = format!(
        "{}\n{}\n{}\n",
        json!({"index": {"_index": "contract"}}),
        json!({"@timestamp": crate::support::iso(now), "message": "bulk"}),
        json!({"delete": {"_id": "x"}})
    );
    for method in [Method::POST, Method::PUT] {
        for (path, template) in [("/es/_bulk", "/es/_bulk"), ("/es/contract/_bulk", "/es/{index}/_bulk")] {
            let response = app
                .client
                .request(method.clone(), format!("{}{path}", app.address))
                .header("content-type", "application/x-ndjson")
                .body(bulk.clone())
                .send()
                .await
                .unwrap();
            let reply = contract.check(method.clone(), template, response).await;
            assert_eq!(reply["errors"], true, "{reply}");
        }
    }
    let not_bulk = app.client.post(format!("{}/es/contract/_bulk", app.address)).body("{").send().await.unwrap();
    contract.check(Method::POST, "/es/{index}/_bulk", not_bulk).await;
    for path in ["/es", "/es/", "/es/_cluster/health", "/es/_license"] {
        contract.check(Method::GET, path, app.get(path).await).await;
    }
    for path in ["/es", "/es/"] {
        contract.check(Method::HEAD, path, app.call(Method::HEAD, path).await).await;
    }

    let explain = app.get("/events/query/explain?q=timeout%20metadata.status%3E%3D500").await;
    let explained = contract.check(Method::GET, "/events/query/explain", explain).await;
    assert_eq!(explained["canonical"], "\"timeout\" AND metadata.status>=500");
    let bad = contract.check(Method::GET, "/events/query/explain", app.get("/events/query/explain?q=(a").await).await;
    assert_eq!(bad["position"], 2, "{bad}");
    // One record of the export, the push's first entry and the bulk's document four times.
    let stored = "SELECT count(*) AS n FROM events WHERE service = 'contract' AND message IN ('otlp', 'loki', 'bulk')";
    assert_eq!(app.database.wait_for_count(stored, 6, Duration::from_secs(10)).await, 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_check_refuses_undocumented_properties_missing_ones_and_wrong_types() {
    let app = TestApp::spawn().await;
    let contract = Contract::of(&app).await;
    let (from, to) = window();
    app.post_json(&event("strict", "one")).await;
    let page = app.get_json(&format!("/events?service=strict&from={from}&to={to}")).await;
    let schema = contract.response_schema("get", "/events", "200");
    assert_eq!(contract.violations(schema.clone(), &page), Vec::<String>::new(), "{page}");
    let mut extra = page.clone();
    extra["pagination"]["cursor"] = json!("x");
    assert_eq!(contract.violations(schema.clone(), &extra).len(), 1, "an undocumented nested property");
    let mut missing = page.clone();
    missing.as_object_mut().unwrap().remove("sortField");
    assert_eq!(contract.violations(schema.clone(), &missing).len(), 1, "a missing required property");
    let mut wrong = page;
    wrong["total"] = json!("many");
    assert_eq!(contract.violations(schema, &wrong).len(), 1, "a wrong type");

    let receipt = app.post_json(&event("strict", "two")).await.json::<Value>().await.unwrap();
    let schema = contract.response_schema("post", "/events", "202");
    assert!(contract.violations(schema.clone(), &receipt).is_empty(), "{receipt}");
    let mut both = receipt;
    both["accepted"] = json!(1);
    assert!(!contract.violations(schema, &both).is_empty(), "a receipt is one shape or the other");
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_by_key_and_limit_answer_as_the_spec_describes() {
    let app = TestApp::spawn_with(|settings| {
        settings.auth.api_keys = aurore_http::KeyDigests::of(["client-key"]);
        settings.auth.admin_keys = aurore_http::KeyDigests::of(["admin-key"]);
        settings.server.max_body_size = 1024;
    })
    .await;
    let mut contract = Contract::of(&app).await;
    let unauthenticated = contract.check(Method::GET, "/dlq", app.get("/dlq").await).await;
    assert_eq!(unauthenticated["errorCode"], "UNAUTHENTICATED");
    let client_key = app.client.delete(format!("{}/dlq/{}", app.address, uuid::Uuid::nil())).bearer_auth("client-key");
    let forbidden = contract.check(Method::DELETE, "/dlq/{id}", client_key.send().await.unwrap()).await;
    assert_eq!(forbidden["errorCode"], "FORBIDDEN");
    let large = app.client.post(format!("{}/events", app.address)).bearer_auth("client-key");
    let large = large.json(&event("contract", &"x".repeat(2048))).send().await.unwrap();
    assert_eq!(contract.check(Method::POST, "/events", large).await["limit"], 1024);
    let long_query = format!("/health?{}", "q".repeat(9000));
    assert_eq!(app.get(&long_query).await.status(), StatusCode::URI_TOO_LONG);
    contract.check(Method::GET, "/health", app.get(&long_query).await).await;
}
