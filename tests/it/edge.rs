//! The edge of the real server: rate limits, API keys, markup, security headers, input
//! limits, the OpenAPI description, and a barrage of hostile requests.

// A failed unwrap is a failed test, which is what these helpers are for.

use crate::support::{Api, TestApp, event, get_with, iso, open_tail, poll, tailed, window};
use aurore::settings::RateLimitConfig;
use chrono::{Duration as Days, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::Write as _;
use std::time::Duration;

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or_default()
}

async fn stored(app: &TestApp) -> i64 {
    app.database.count("SELECT count(*) AS n FROM events").await
}

#[tokio::test(flavor = "multi_thread")]
async fn each_client_gets_its_rate_per_group_and_a_batch_counts_its_events() {
    let app = TestApp::spawn_with(|settings| {
        settings.rate_limit = RateLimitConfig {
            ingest_per_second: 5,
            query_per_second: 1,
            health_per_second: 0,
            admin_per_second: 1,
            burst_factor: 2.0,
        };
    })
    .await;
    let ten: Vec<Value> = (0..10).map(|i| event("limited", &i.to_string())).collect();
    let response = app.post_json(&Value::Array(ten)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&response, "ratelimit-limit"), "10");
    assert_eq!(header(&response, "ratelimit-remaining"), "0");
    assert_eq!(header(&response, "x-ratelimit-remaining"), "0");

    let response = app.post_json(&event("limited", "one too many")).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = header(&response, "retry-after").parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&response, "ratelimit-remaining"), "0");
    let body: Value = response.json().await.unwrap();
    assert_eq!((body["errorCode"].as_str(), body["group"].as_str()), (Some("RATE_LIMITED"), Some("ingest")));
    assert_eq!(body["limit"], 10);

    // A batch larger than a whole burst could never pass: it is refused by size instead.
    let eleven = Value::Array((0..11).map(|i| event("limited", &i.to_string())).collect());
    let response = poll(
        Duration::from_secs(5),
        || app.post_json(&eleven),
        |response| response.status() != StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.json::<Value>().await.unwrap()["limit"], 10);

    // Ingest used up its bucket; queries have their own, health none at all.
    let (from, to) = window();
    let query = [("service", "limited"), ("from", from.as_str()), ("to", to.as_str())];
    assert_eq!(app.get_events(&query).await.status(), StatusCode::OK);
    assert_eq!(app.get_events(&query).await.status(), StatusCode::OK);
    assert_eq!(app.get_events(&query).await.status(), StatusCode::TOO_MANY_REQUESTS);
    for _ in 0..50 {
        let health = app.get("/health/live").await;
        assert_eq!(health.status(), StatusCode::OK);
        assert!(health.headers().get("ratelimit-limit").is_none());
    }
    let stored = app.database.wait_for_count("SELECT count(*) AS n FROM events", 10, Duration::from_secs(5)).await;
    assert_eq!(stored, 10, "only the events within the limit are stored");
    let metrics = app.get_text("/metrics").await;
    for group in ["ingest", "query"] {
        let series = format!("aurore_rate_limited_requests_total{{group=\"{group}\"}}");
        assert!(metrics.lines().any(|line| line.starts_with(&series)), "{series} missing from\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_names_the_client_and_a_stranger_cannot() {
    let app = TestApp::spawn_with(|settings| {
        settings.rate_limit = RateLimitConfig { query_per_second: 1, burst_factor: 1.0, ..RateLimitConfig::off() };
        settings.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let (from, to) = window();
    let get = |client: &'static str| {
        app.client
            .get(format!("{}/events", app.address))
            .query(&[("service", "svc"), ("from", from.as_str()), ("to", to.as_str())])
            .header("X-Forwarded-For", format!("203.0.113.50, {client}"))
            .send()
    };
    assert_eq!(get("198.51.100.1").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("198.51.100.1").await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    // Another client behind the same proxy has its own bucket.
    assert_eq!(get("198.51.100.2").await.unwrap().status(), StatusCode::OK);
    // A proxy that appends a header line of its own: the client's line (any address it
    // likes) comes first and proves nothing; the proxy's last line names the client.
    let appended = |spoofed: &'static str| {
        app.client
            .get(format!("{}/events", app.address))
            .query(&[("service", "svc"), ("from", from.as_str()), ("to", to.as_str())])
            .header("X-Forwarded-For", spoofed)
            .header("X-Forwarded-For", "198.51.100.1")
            .send()
    };
    assert_eq!(
        appended("192.0.2.77").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS,
        "charged to 198.51.100.1"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_guard_ingest_query_and_admin_scopes() {
    let app = TestApp::spawn_with(|settings| {
        settings.auth.api_keys = aurore_http::KeyDigests::of(["client-key"]);
        settings.auth.admin_keys = aurore_http::KeyDigests::of(["admin-key"]);
    })
    .await;
    let post = |key: Option<(&'static str, &'static str)>| {
        let request = app.client.post(format!("{}/events", app.address)).json(&event("keyed", "hello"));
        match key {
            Some((name, value)) => request.header(name, value),
            None => request,
        }
        .send()
    };
    let response = post(None).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&response, "www-authenticate"), "Bearer");
    assert_eq!(response.json::<Value>().await.unwrap()["errorCode"], "UNAUTHENTICATED");
    assert_eq!(post(Some(("Authorization", "Bearer wrong"))).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(post(Some(("Authorization", "Bearer client-key"))).await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(post(Some(("X-API-Key", "client-key"))).await.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(post(Some(("X-API-Key", "admin-key"))).await.unwrap().status(), StatusCode::ACCEPTED);

    let (from, to) = window();
    let query = [("service", "keyed"), ("from", from.as_str()), ("to", to.as_str())];
    let events = app.client.get(format!("{}/events", app.address)).query(&query);
    assert_eq!(events.try_clone().unwrap().send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(events.header("X-API-Key", "client-key").send().await.unwrap().status(), StatusCode::OK);

    let retention = app.client.post(format!("{}/admin/retention/run", app.address));
    assert_eq!(retention.try_clone().unwrap().send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let forbidden = retention.try_clone().unwrap().bearer_auth("client-key").send().await.unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    assert_eq!(forbidden.json::<Value>().await.unwrap()["errorCode"], "FORBIDDEN");
    assert_eq!(retention.bearer_auth("admin-key").send().await.unwrap().status(), StatusCode::OK);
    let delete = app.client.delete(format!("{}/dlq/00000000-0000-0000-0000-000000000000", app.address));
    assert_eq!(delete.bearer_auth("client-key").send().await.unwrap().status(), StatusCode::FORBIDDEN);

    // Probes and scrapers never need a key.
    for path in ["/health", "/health/live", "/metrics", "/openapi.json"] {
        let response = app.client.get(format!("{}{path}", app.address)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(
        app.database.wait_for_count("SELECT count(*) AS n FROM events", 3, Duration::from_secs(5)).await,
        3,
        "only the requests with a key stored events"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn markup_is_stripped_from_messages_and_metadata_before_storage() {
    let app = TestApp::spawn().await;
    let hostile = json!({
        "timestamp": iso(Utc::now()), "service": "web",
        "message": "<b>Hello</b> <script>alert(1)</script>world & more",
        "metadata": {"comment": "<img src=x onerror=alert(1)>nice", "nested": [{"html": "<a href=\"javascript:x\">go</a>"}], "n": 5},
    });
    assert_eq!(app.post_json(&hostile).await.status(), StatusCode::ACCEPTED);
    let only_markup = json!({"timestamp": iso(Utc::now()), "service": "web", "message": "<script>alert(1)</script>"});
    let response = app.post_json(&only_markup).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "message", "{body}");

    let (from, to) = window();
    let query = [("service", "web"), ("from", from.as_str()), ("to", to.as_str())];
    let page: Value = poll(
        Duration::from_secs(5),
        || async { app.get_events(&query).await.json::<Value>().await.unwrap() },
        |page| page["total"] == 1,
    )
    .await;
    let stored = &page["events"][0];
    assert_eq!(stored["message"], "Hello world & more");
    assert_eq!(stored["metadata"], json!({"comment": "nice", "nested": [{"html": "go"}], "n": 5}));
}

/// Texts people type that only look a little like markup.
fn ordinary_texts() -> Vec<String> {
    let texts = ["&", "<", ">", "\"quoted\" and 'single'", "R&D", "x < 5", "a<b", "<3", "&amp;", "&lt;tag&gt;"];
    let mut texts: Vec<String> = texts.into_iter().map(str::to_owned).collect();
    texts.extend(["emoji 🎉🚀 ok".to_owned(), "漢字とかな、中文".to_owned(), "a & b < c > d".to_owned()]);
    texts
}

/// Every event `query` selects from `/events` (waiting for them) and `/events/export`, raw.
async fn queried_and_exported(app: &TestApp, query: &[(&str, &str)], count: usize) -> (String, String) {
    let page = poll(
        Duration::from_secs(10),
        || async { app.get_events(query).await.text().await.unwrap() },
        |page: &String| serde_json::from_str::<Value>(page).unwrap()["total"] == count,
    )
    .await;
    let response = app.client.get(format!("{}/events/export", app.address)).query(query).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    (page, response.text().await.unwrap())
}

fn assert_same_event(found: &Value, sent: &Value) {
    for field in ["service", "message", "metadata"] {
        assert_eq!(found[field], sent[field], "{field} comes back byte for byte");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ordinary_text_comes_back_as_sent_through_query_tail_and_export_while_markup_never_does() {
    let app = TestApp::spawn().await;
    let (from, to) = window();
    let long_line: String = "Långt & <3 x < 5 ✓ ".chars().cycle().take(2000).collect();
    let mut sent: Vec<Value> = ordinary_texts()
        .into_iter()
        .map(|text| {
            json!({"timestamp": iso(Utc::now()), "service": text, "message": text,
                   "metadata": {"text": text, "nested": [{"deep": text}]}})
        })
        .collect();
    sent.push(
        json!({"timestamp": iso(Utc::now()), "service": "long", "message": long_line, "metadata": {"text": long_line}}),
    );

    // Each text as a service, a message (`q`) and a metadata value (`metadata.text`); the
    // long line is beyond a filter's length and is selected by its service only.
    let selections: Vec<Vec<(&str, &str)>> = sent
        .iter()
        .map(|event| {
            let (service, message) = (event["service"].as_str().unwrap(), event["message"].as_str().unwrap());
            if service == "long" {
                vec![("service", service)]
            } else {
                vec![("service", service), ("q", message), ("metadata.text", message)]
            }
        })
        .collect();
    let mut tails = Vec::new();
    for selection in &selections {
        tails.push(open_tail(&app, selection).await);
    }
    let hostile = json!({"timestamp": iso(Utc::now()), "service": "hostile",
        "message": "<script>alert(1)</script>before <img src=x onerror=alert(1)>after",
        "metadata": {"html": "<img src=x onerror=alert(1)>kept & <3 <script>alert(1)</script>"}});
    let mut hostile_tail = open_tail(&app, &[("service", "hostile")]).await;
    assert_eq!(app.post_json(&Value::Array(sent.clone())).await.status(), StatusCode::ACCEPTED);
    assert_eq!(app.post_json(&hostile).await.status(), StatusCode::ACCEPTED);

    for ((event, selection), mut tail) in sent.iter().zip(&selections).zip(tails) {
        let query = [selection.as_slice(), &[("from", from.as_str()), ("to", to.as_str())]].concat();
        let (page, export) = queried_and_exported(&app, &query, 1).await;
        let page: Value = serde_json::from_str(&page).unwrap();
        assert_same_event(&page["events"][0], event);
        let lines: Vec<Value> = export.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines.len(), 1, "{export}");
        assert_same_event(&lines[0], event);
        let frames = tailed(&mut tail, 1).await;
        assert_same_event(&serde_json::from_str(&frames[0]).unwrap(), event);
    }
    // As a browser or curl would write it.
    let url = format!("{}/events?service=R%26D&from={from}&to={to}", app.address);
    let page: Value = app.client.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!((page["total"].as_u64(), page["events"][0]["service"].as_str()), (Some(1), Some("R&D")), "{page}");

    let query = [("service", "hostile"), ("from", from.as_str()), ("to", to.as_str())];
    let (page, export) = queried_and_exported(&app, &query, 1).await;
    let frames = tailed(&mut hostile_tail, 1).await;
    for output in [page.as_str(), export.as_str(), frames[0].as_str()] {
        for markup in ["<script", "alert(1)", "onerror", "<img"] {
            assert!(!output.contains(markup), "{markup} in {output}");
        }
        let event: Value = serde_json::from_str(output.lines().next().unwrap()).unwrap();
        let event = if event["events"].is_array() { event["events"][0].clone() } else { event };
        assert_eq!(event["message"], "before after");
        assert_eq!(event["metadata"]["html"], "kept & <3 ");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_escape_a_query_tail_and_export_for_the_raw_text_find_the_escaped_event() {
    let app = TestApp::spawn_with(|settings| settings.ingest.sanitize = aurore_domain::Markup::Escape).await;
    let (from, to) = window();
    let raw = "R&D <b>'x'</b>";
    let selection = [("service", raw), ("q", raw), ("metadata.text", raw)];
    let mut tail = open_tail(&app, &selection).await;
    let event = json!({"timestamp": iso(Utc::now()), "service": raw, "message": raw, "metadata": {"text": raw}});
    assert_eq!(app.post_json(&event).await.status(), StatusCode::ACCEPTED);

    let escaped = "R&amp;D &lt;b&gt;&#x27;x&#x27;&lt;&#x2F;b&gt;";
    let stored = json!({"service": escaped, "message": escaped, "metadata": {"text": escaped}});
    let query = [selection.as_slice(), &[("from", from.as_str()), ("to", to.as_str())]].concat();
    let (page, export) = queried_and_exported(&app, &query, 1).await;
    assert_same_event(&serde_json::from_str::<Value>(&page).unwrap()["events"][0], &stored);
    assert_same_event(&serde_json::from_str(export.trim_end()).unwrap(), &stored);
    assert_same_event(&serde_json::from_str(&tailed(&mut tail, 1).await[0]).unwrap(), &stored);
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_carry_security_headers_and_cors_answers_browsers() {
    // By default no page of another origin may read or call anything, and what a no-CORS
    // `fetch` can send (a form, text/plain) is never taken for events.
    let default = TestApp::spawn().await;
    let response = default.get("/health").await;
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert!(header(&response, "content-security-policy").contains("default-src 'none'"));
    for method in [reqwest::Method::OPTIONS, reqwest::Method::GET] {
        let response = default
            .client
            .request(method.clone(), format!("{}/events", default.address))
            .header("Origin", "https://any-page.example")
            .header("Access-Control-Request-Method", "DELETE")
            .send()
            .await
            .unwrap();
        assert!(response.headers().get("access-control-allow-origin").is_none(), "{method}");
    }
    let body = serde_json::to_vec(&event("forms", "posted by a page")).unwrap();
    for content_type in
        [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("multipart/form-data")]
    {
        let request = default.client.post(format!("{}/events", default.address)).body(body.clone());
        let request = match content_type {
            Some(content_type) => request.header("content-type", content_type),
            None => request,
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}");
    }
    let charset = default
        .client
        .post(format!("{}/events", default.address))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(charset.status(), StatusCode::ACCEPTED);
    assert_eq!(default.database.wait_for_count("SELECT count(*) AS n FROM events", 1, Duration::from_secs(5)).await, 1);

    let app = TestApp::spawn_with(|settings| settings.server.cors_origins = vec!["*".into()]).await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/events", app.address))
        .header("Origin", "https://dashboard.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type, x-api-key")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(header(&preflight, "access-control-allow-origin"), "*");
    let simple =
        get_with(&app.client, format!("{}/health", app.address), &[("Origin", "https://dashboard.example")]).await;
    assert!(header(&simple, "access-control-expose-headers").contains("x-correlation-id"));

    let closed =
        TestApp::spawn_with(|settings| settings.server.cors_origins = vec!["https://ops.example".into()]).await;
    let foreign =
        get_with(&closed.client, format!("{}/health", closed.address), &[("Origin", "https://evil.example")]).await;
    assert!(foreign.headers().get("access-control-allow-origin").is_none());
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_input_limit_answers_4xx_naming_the_limit() {
    let app = TestApp::spawn_with(|settings| {
        settings.server.max_body_size = 64 * 1024;
        settings.server.max_query_string_size = 1024;
        settings.server.max_header_size = 4096;
    })
    .await;
    let response = app.get_events(&[("service", &"s".repeat(2000))]).await;
    assert_eq!(response.status(), StatusCode::URI_TOO_LONG);
    assert_eq!(response.json::<Value>().await.unwrap()["limit"], 1024);

    let response =
        app.client.get(format!("{}/health", app.address)).header("X-Padding", "p".repeat(5000)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(response.json::<Value>().await.unwrap()["limit"], 4096);

    // 100 MB of zeros compresses to a few kilobytes: decompression stops at the limit.
    let bomb = vec![b' '; 100 << 20];
    for (encoding, body) in [("zstd", zstd::encode_all(&bomb[..], 19).unwrap()), ("gzip", gzip(&bomb))] {
        assert!(body.len() < 200 * 1024, "{encoding} bomb is {} bytes", body.len());
        let response = app
            .client
            .post(format!("{}/events", app.address))
            .header("Content-Type", "application/json")
            .header("Content-Encoding", encoding)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{encoding}: {body}");
        assert_eq!(body["limit"], 65536);
    }

    let response = app
        .client
        .post(format!("{}/events", app.address))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body("not gzip at all")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());

    let long = "m".repeat(2001);
    let response = app.post_json(&event("svc", &long)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(body["errors"][0]["constraints"]["maxLength"].as_str().unwrap().contains("2000"), "{body}");
    assert!(app.get("/health").await.status().is_success());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_served_description_matches_the_routes_the_server_answers() {
    let app = TestApp::spawn().await;
    let spec: Value = app.get_json("/openapi.json").await;
    assert_eq!(spec["openapi"], "3.1.0");
    let legacy: Value = app.get_json("/api-json").await;
    assert_eq!(legacy, spec);
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{}", paths.len());
    for (path, item) in paths {
        let concrete = path.replace("{id}", "00000000-0000-0000-0000-000000000000");
        for method in item.as_object().unwrap().keys() {
            if path == "/events/tail" {
                continue; // A stream that stays open; routed like the rest (see the unit test).
            }
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response =
                app.client.request(method.clone(), format!("{}{concrete}", app.address)).send().await.unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            assert!(
                !(status == StatusCode::NOT_FOUND && body.contains("Cannot"))
                    && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not routed: {status} {body}"
            );
        }
    }
}

/// `method target` sent byte for byte (a URL library would normalise the target), with an
/// optional key; the status and `ratelimit-limit` of the answer, read from its head only
/// (a route that streams must not hang the test).
async fn raw_request(address: &str, method: &str, target: &str, key: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let key = key.map(|key| format!("X-API-Key: {key}\r\n")).unwrap_or_default();
    let request =
        format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n{key}Content-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await.unwrap().unwrap();
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let limit = head
        .lines()
        .find_map(|line| line.strip_prefix("ratelimit-limit:"))
        .map(|value| value.trim().to_owned())
        .unwrap_or_default();
    (status, limit)
}

/// Other ways to write `path` that a router, a proxy or a decoder might treat as the same.
fn spellings(path: &str, host: &str) -> Vec<String> {
    let mut spellings = Vec::new();
    for (i, character) in path.char_indices() {
        let (before, after) = (&path[..i], &path[i + character.len_utf8()..]);
        if character == '/' {
            spellings.push(format!("{before}//{after}"));
            spellings.push(format!("{before}/%2F{after}"));
            spellings.push(format!("{before}/%2f{after}"));
            spellings.push(format!("{before}\\{after}"));
        } else {
            spellings.push(format!("{before}%{:02X}{after}", character as u32));
            spellings.push(format!("{before}%{:02x}{after}", character as u32));
            spellings.push(format!("{before}%25{:02X}{after}", character as u32));
        }
    }
    let every_character: String =
        path.chars().map(|c| if c == '/' { "/".to_owned() } else { format!("%{:02X}", c as u32) }).collect();
    let capitalised: String = path
        .split('/')
        .map(|segment| {
            let mut chars = segment.chars();
            chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
        })
        .collect::<Vec<String>>()
        .join("/");
    spellings.extend([
        every_character,
        capitalised,
        path.to_uppercase(),
        format!("{path}/"),
        format!("{path}//"),
        format!("/{path}"),
        format!("/.{path}"),
        format!("/x/..{path}"),
        format!("/%2e{path}"),
        format!("/x/%2E%2E{path}"),
        format!("{path}/."),
        format!("{path}/x/.."),
        format!("{path}%00"),
        format!("{path}%20"),
        format!("{path};"),
        format!("{path};x=1"),
        format!("{path}#"),
        format!("http://{host}{path}"),
        format!("HTTP://{host}{path}"),
    ]);
    spellings
}

/// Every row of the route table (as the served description lists it), under every
/// spelling of its path: the answer is 400/404/405, or exactly the canonical path's key
/// decision from the same rate-limit bucket. No spelling reaches a handler unguarded.
#[tokio::test(flavor = "multi_thread")]
async fn no_spelling_of_a_path_gets_past_the_key_or_the_rate_limit_of_its_route() {
    let app = TestApp::spawn_with(|settings| {
        settings.auth.api_keys = aurore_http::KeyDigests::of(["client-key"]);
        settings.auth.admin_keys = aurore_http::KeyDigests::of(["admin-key"]);
        // Distinct limits name the bucket a request was charged to.
        settings.rate_limit = RateLimitConfig {
            ingest_per_second: 50_000,
            query_per_second: 40_000,
            health_per_second: 30_000,
            admin_per_second: 20_000,
            burst_factor: 1.0,
        };
    })
    .await;
    let spec: Value = app.get_json("/openapi.json").await;
    let host = app.address.trim_start_matches("http://");
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        let concrete = path.replace("{id}", "00000000-0000-0000-0000-000000000000");
        for method in item.as_object().unwrap().keys().map(|method| method.to_uppercase()) {
            let (status, limit) = raw_request(&app.address, &method, &concrete, None).await;
            assert!(!limit.is_empty(), "{method} {concrete}: the canonical path is rate-limited");
            let admin = status == 401 && {
                let (with_client_key, _) = raw_request(&app.address, &method, &concrete, Some("client-key")).await;
                with_client_key == 403
            };
            for spelling in spellings(&concrete, host) {
                let refused = |answer: u16| matches!(answer, 400 | 404 | 405);
                let (answer, answer_limit) = raw_request(&app.address, &method, &spelling, None).await;
                assert!(
                    refused(answer) || (answer == status && answer_limit == limit),
                    "{method} {spelling}: {answer} charged to {answer_limit:?}; {concrete} gets {status} charged to {limit:?}"
                );
                if admin {
                    let (answer, _) = raw_request(&app.address, &method, &spelling, Some("client-key")).await;
                    assert!(refused(answer) || answer == 403, "{method} {spelling} with a client key: {answer}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{checked} spellings checked");
    assert_eq!(stored(&app).await, 0, "no request without a key stored anything");
}

/// Every client-controlled query parameter at its extremes and in odd spellings: a 4xx or
/// an answer, never a 5xx, a dropped connection, or an ERROR in the log.
#[tokio::test(flavor = "multi_thread")]
async fn query_parameters_at_their_extremes_get_4xx_never_5xx_or_an_error_log() {
    use base64::Engine as _;
    let database = crate::support::TestDatabase::create().await;
    let journal = tempfile::tempdir().unwrap();
    let service = crate::support::Service::start(&database.url, journal.path(), &[]);
    service.wait_until_ready().await;
    let instants = [
        "+262143-12-31T23:59:59.999999Z",
        "-262143-01-01T00:00:00Z",
        "+262142-12-31T00:00:00",
        "+262142-12-31T23:59:59.999999",
        "-5000-01-01",
        "-5000-01-02",
        "0000-01-01",
        "1969-12-31T23:59:59.999999Z",
        "1970-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59.999999-23:59",
        "253402300800000",
        "99999999999999999999999",
        "-1",
        "",
        "2024-02-30",
        "2024-01-15T25:00:00Z",
        "\u{0}",
        "2024-01-15T00:00:00\u{0}Z",
    ];
    let mut queries: Vec<Vec<(String, String)>> = Vec::new();
    let with = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    for from in instants {
        for to in instants {
            queries.push(with(&[("service", "a"), ("from", from), ("to", to)]));
        }
    }
    // Ranges of one microsecond, at both ends of the supported range.
    for (from, to) in [
        ("2024-01-15T00:00:00Z", "2024-01-15T00:00:00.000001Z"),
        ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000001Z"),
        ("9999-12-31T23:59:59.999998Z", "9999-12-31T23:59:59.999999Z"),
    ] {
        queries.push(with(&[("service", "a"), ("from", from), ("to", to)]));
    }
    let range = [("service", "a"), ("from", "2024-01-15T00:00:00Z"), ("to", "2024-01-16T00:00:00Z")];
    for (name, value) in [
        ("page", "0"),
        ("page", "-1"),
        ("page", "4294967296"),
        ("page", "18446744073709551616"),
        ("page", "1.5"),
        ("page", "10000"),
        ("pageSize", "1000"),
        ("pageSize", "0"),
        ("sortField", "message"),
        ("sortField", "MESSAGE"),
        ("sortOrder", "aSc"),
        ("service", ""),
        ("q", "\u{0}"),
        ("q", "%_\\"),
        ("metadata.a", "\u{0}"),
        ("metadata.\u{0}", "x"),
    ] {
        let mut pairs: Vec<(String, String)> = with(&range);
        pairs.retain(|(key, _)| key != name);
        pairs.push((name.to_owned(), value.to_owned()));
        queries.push(pairs);
    }
    let id = "00000000-0000-0000-0000-000000000000";
    let cursors: Vec<String> = [
        format!(r#"{{"f":"timestamp","o":"DESC","k":{{"t":"+262142-12-31T00:00:00Z"}},"i":"{id}","q":""}}"#),
        format!(r#"{{"f":"timestamp","o":"DESC","k":{{"t":"-5000-01-01T00:00:00Z"}},"i":"{id}","q":""}}"#),
        format!(r#"{{"f":"message","o":"DESC","k":{{"s":"a\u0000b"}},"i":"{id}","q":""}}"#),
        format!(r#"{{"f":"message","o":"DESC","k":{{"r":"2024-01-15T00:00:00Z"}},"i":"{id}","q":""}}"#),
        format!(
            r#"{{"f":"timestamp","o":"DESC","k":{{"t":"2024-01-15T00:00:00Z"}},"i":"{id}","q":"{}"}}"#,
            "x".repeat(5000)
        ),
        r#"{"f":"timestamp","o":"DESC","k":{"t":"2024-01-15T00:00:00Z"},"i":"not-a-uuid","q":""}"#.to_owned(),
        r#"{"f":"timestamp","o":"DESC","k":{"t":12},"i":null}"#.to_owned(),
        "[]".to_owned(),
        "null".to_owned(),
        "\u{0}".to_owned(),
    ]
    .iter()
    .map(|json| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
    .chain(["", "====", "%00", "\u{0}", "a"].map(str::to_owned))
    .collect();
    for cursor in cursors {
        for sort in ["timestamp", "message"] {
            let mut pairs: Vec<(String, String)> = with(&range);
            pairs.extend([("sortField".to_owned(), sort.to_owned()), ("cursor".to_owned(), cursor.clone())]);
            queries.push(pairs);
        }
    }
    let mut answered = 0;
    for pairs in &queries {
        let query = serde_urlencoded::to_string(pairs).unwrap();
        for path in ["/events", "/events/export"] {
            let url = format!("{}{path}?{query}", service.address);
            let response = service.client.get(&url).send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
            let status = response.status();
            let body = response.bytes().await.unwrap_or_else(|e| panic!("{url}: the answer was cut: {e}"));
            assert!(status.as_u16() < 500, "{path}?{query}: {status} {}", String::from_utf8_lossy(&body));
            answered += 1;
        }
    }
    for query in
        ["limit=0", "limit=4294967296", "offset=18446744073709551615", "offset=-1", "service=%00", "reprocessed=TRUE"]
    {
        let response = service.get(&format!("/dlq?{query}")).await;
        assert!(response.status().as_u16() < 500, "/dlq?{query}: {}", response.status());
    }
    assert!(answered > 800, "{answered}");
    assert!(service.errors_logged().is_empty(), "{:#?}", service.errors_logged());
    assert!(service.terminate().await.success());
}

/// The bound on peak memory under hostile bodies that the README's limits table states.
const HOSTILE_PEAK_RSS_MIB: u64 = 256;
const STALLED_CONNECTIONS: usize = 3000;

/// Compressed bombs of tiny events (NDJSON and JSON arrays, 8 MB each once inflated, eight
/// at a time), and 3,000 connections that declare 8 MB bodies and send one byte: refused
/// early, timed out, and the process's peak memory stays within the stated bound.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_bodies_keep_peak_memory_within_the_bound() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let database = crate::support::TestDatabase::create().await;
    let journal = tempfile::tempdir().unwrap();
    let service =
        crate::support::Service::start(&database.url, journal.path(), &[("AURORE__SERVER__BODY_TIMEOUT_SECS", "2")]);
    service.wait_until_ready().await;
    let idle = service.peak_rss_kib();

    let ndjson_bomb = gzip(&b"1\n".repeat(4_000_000));
    let array_bomb = gzip(format!("[{}1]", "1,".repeat(3_999_999)).as_bytes());
    let mut bombs = Vec::new();
    for (bomb, content_type) in [(ndjson_bomb, "application/x-ndjson"), (array_bomb, "application/json")] {
        for _ in 0..8 {
            let request = service
                .client
                .post(format!("{}/events", service.address))
                .header("content-type", content_type)
                .header("content-encoding", "gzip")
                .body(bomb.clone());
            bombs.push(tokio::spawn(async move { request.send().await.unwrap().status() }));
        }
    }
    for bomb in bombs {
        assert_eq!(bomb.await.unwrap(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    let after_bombs = service.peak_rss_kib();

    let host = service.address.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..STALLED_CONNECTIONS {
        let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
        let head = format!(
            "POST /events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 8000000\r\n\r\n["
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        slow.push(stream);
    }
    for mut stream in slow {
        let mut answer = Vec::new();
        // The server answers a body that stalls, then closes; a dropped connection (the
        // connection cap) is a refusal too.
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "a stalled body was never timed out");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    let peak = service.peak_rss_kib();
    println!(
        "peak RSS: idle {} MiB, after 16 bombs {} MiB, after {STALLED_CONNECTIONS} stalled 8 MB bodies {} MiB",
        idle / 1024,
        after_bombs / 1024,
        peak / 1024
    );
    assert!(peak / 1024 <= HOSTILE_PEAK_RSS_MIB, "peak RSS {} MiB over {HOSTILE_PEAK_RSS_MIB} MiB", peak / 1024);
    assert_eq!(service.get("/health").await.status(), 200);
    assert!(service.terminate().await.success());
}

/// A broken clock's events are refused with the bound named, one by one in a batch,
/// while the README's sample with its 2024 timestamp is still accepted.
#[tokio::test(flavor = "multi_thread")]
async fn timestamps_far_in_the_future_are_refused_naming_the_bound() {
    let app = TestApp::spawn().await;
    let future = iso(Utc::now() + Days::minutes(11));
    let response = app.post_json(&json!({"timestamp": future, "service": "clock", "message": "ahead"})).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = response.text().await.unwrap();
    assert!(body.contains("maxFuture") && body.contains("ingest.max_future_secs"), "{body}");
    let batch = json!([
        {"timestamp": "2099-06-01T00:00:00Z", "service": "clock", "message": "broken"},
        {"timestamp": "2024-01-15T10:30:00.000Z", "service": "clock", "message": "the README's sample"},
        {"timestamp": iso(Utc::now() + Days::minutes(9)), "service": "clock", "message": "slightly ahead"},
    ]);
    let receipt: Value = app.post_json(&batch).await.json().await.unwrap();
    assert_eq!((receipt["accepted"].clone(), receipt["rejected"].clone()), (json!(2), json!(1)), "{receipt}");
    assert_eq!(receipt["errors"][0]["index"], 0, "{receipt}");
}

/// Requests a careless or hostile client might send, with whether each should be stored.
fn hostile_requests() -> Vec<(&'static str, String, Vec<u8>, bool)> {
    let mut rng = fastrand::Rng::with_seed(7);
    let now = iso(Utc::now());
    let mut requests: Vec<(&'static str, String, Vec<u8>, bool)> = Vec::new();
    let json = |value: Value| serde_json::to_vec(&value).unwrap();
    let injections = [
        "'; DROP TABLE events; --",
        "\" OR 1=1 --",
        "x'); DELETE FROM dead_letters; --",
        "$$; SELECT pg_sleep(10); $$",
        "\\'; TRUNCATE events CASCADE; --",
        "%' OR '%'='",
        "nul \0 byte",
    ];
    let scripts = [
        "<script>alert(document.cookie)</script>x",
        "<img src=x onerror=alert(1)>x",
        "<svg/onload=alert(1)>x",
        "<iframe src=javascript:alert(1)></iframe>x",
        "<<script>script>alert(1)<</script>/script>x",
        "<a href='jav&#x09;ascript:alert(1)'>x</a>",
    ];
    for text in injections.iter().chain(scripts.iter()) {
        // Valid events whatever their text: stored, as data.
        let event = json!({"timestamp": now, "service": "hostile", "message": text, "metadata": {"q": text}});
        requests.push(("application/json", String::new(), json(event), true));
        // As query parameters: never more than a 4xx or an empty page.
        for name in ["service", "from", "to", "q", "cursor", "sortField", "metadata.user"] {
            let query = serde_urlencoded::to_string([
                ("service", "hostile"),
                ("from", "2020-01-01T00:00:00Z"),
                ("to", "2020-01-02T00:00:00Z"),
                (name, text),
            ])
            .unwrap();
            requests.push(("GET", query, Vec::new(), false));
        }
    }
    let fields = ["timestamp", "service", "message", "metadata", "idempotencyKey", "extra"];
    let wrong_values = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1e308),
        json!(18_446_744_073_709_551_615u64),
        json!(""),
        json!([]),
        json!({}),
        json!("not a date"),
        json!("9999-12-31T23:59:59Z"),
        json!("x".repeat(20_000)),
        json!([[[[[[[[[[["deep"]]]]]]]]]]]),
    ];
    for field in fields {
        for value in &wrong_values {
            let mut event = json!({"timestamp": now, "service": "hostile", "message": "m", "metadata": {"a": 1}});
            event[field] = value.clone();
            let valid = matches!((field, value), ("metadata", Value::Object(_)) | ("metadata", Value::Null))
                || (field == "idempotencyKey"
                    && value.as_str().is_some_and(|text| !text.is_empty() && text.len() <= 256))
                || (field == "idempotencyKey" && value.is_null());
            requests.push(("application/json", String::new(), json(event), valid));
        }
    }
    for _ in 0..1500 {
        let length = rng.usize(0..512);
        let bytes: Vec<u8> = (0..length).map(|_| rng.u8(..)).collect();
        requests.push(("application/json", String::new(), bytes.clone(), false));
        requests.push(("application/x-ndjson", String::new(), bytes, false));
    }
    let valid =
        serde_json::to_string(&json!({"timestamp": now, "service": "hostile", "message": "truncated"})).unwrap();
    for cut in 0..valid.len() {
        requests.push(("application/json", String::new(), valid.as_bytes()[..cut].to_vec(), false));
    }
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    requests.push(("application/json", String::new(), nested.into_bytes(), false));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    requests.push(("application/json", String::new(), deep_object.into_bytes(), false));
    let mut invalid_utf8 = br#"{"timestamp": "2024-01-15T10:30:00Z", "service": "hostile", "message": ""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    invalid_utf8.extend_from_slice(br#""}"#);
    requests.push(("application/json", String::new(), invalid_utf8, false));
    requests.push(("text/html", String::new(), b"<html><script>alert(1)</script></html>".to_vec(), false));
    for _ in 0..300 {
        let length = rng.usize(0..200);
        let junk: String = (0..length).map(|_| char::from(rng.u8(0x21..0x7f))).collect();
        requests.push(("GET", junk, Vec::new(), false));
    }
    requests.push(("GET", "service=%zz&from=%&to=%ff%fe".into(), Vec::new(), false));
    requests.push(("GET", "service=a%00b&from=2024-01-01&to=2024-01-02".into(), Vec::new(), false));
    requests.push(("GET /dlq", "service=d%7B%C2%90W%00%C2%80&reprocessed=true&limit=202".into(), Vec::new(), false));
    requests.push(("GET /dlq", "service='; DROP TABLE dead_letters; --&limit=-1&offset=1e9".into(), Vec::new(), false));
    requests.push(("GET /events/export", "service=a%00&from=2024-01-01&to=2024-01-02".into(), Vec::new(), false));
    requests.push(("GET", "service=a&service=b&service=c".into(), Vec::new(), false));
    requests
}

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_hostile_requests_get_no_5xx_store_only_valid_events_and_leave_the_server_healthy() {
    let app = TestApp::spawn_with(|settings| settings.rate_limit = RateLimitConfig::default()).await;
    let requests = hostile_requests();
    assert!(requests.len() > 3000, "{}", requests.len());
    let mut expected_stored = 0;
    for (kind, query, body, valid) in &requests {
        let response = if let Some(path) = kind.strip_prefix("GET ") {
            app.client.get(format!("{}{path}?{query}", app.address)).send().await.unwrap()
        } else if *kind == "GET" {
            app.get(&format!("/events?{query}")).await
        } else {
            app.client
                .post(format!("{}/events", app.address))
                .header("Content-Type", *kind)
                .header("X-Correlation-ID", "'; DROP TABLE events; --")
                .body(body.clone())
                .send()
                .await
                .unwrap()
        };
        let status = response.status();
        assert!(!status.is_server_error(), "{kind} {query} {:?} → {status}", String::from_utf8_lossy(body));
        if kind.starts_with("GET") {
            assert!(status.is_client_error() || status == StatusCode::OK, "{kind} {query} → {status}");
            if status == StatusCode::OK {
                assert_eq!(response.json::<Value>().await.unwrap()["total"], 0, "{query}");
            }
        } else if *valid {
            assert_eq!(status, StatusCode::ACCEPTED, "{:?}", String::from_utf8_lossy(body));
            expected_stored += 1;
        } else if status == StatusCode::ACCEPTED {
            // Random bytes that happen to hold a valid NDJSON line would be fine, but must be counted.
            let receipt: Value = response.json().await.unwrap();
            expected_stored += receipt["accepted"].as_i64().unwrap_or(1);
        } else {
            assert!(status.is_client_error(), "{status}");
        }
    }
    let count =
        app.database.wait_for_count("SELECT count(*) AS n FROM events", expected_stored, Duration::from_secs(10)).await;
    assert_eq!(count, expected_stored);
    let scripted = app
        .database
        .count("SELECT count(*) AS n FROM events WHERE message ILIKE '%<script%' OR metadata::text ILIKE '%<script%' OR message ILIKE '%onerror%'")
        .await;
    assert_eq!(scripted, 0, "no executable markup is stored");
    assert_eq!(stored(&app).await, expected_stored, "the events table survived every injection");
    let health = app.get("/health").await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(app.post_json(&event("after", "still fine")).await.status(), StatusCode::ACCEPTED);
}

/// `durability` goes through the same query-string reading as every other parameter: a NUL
/// in it is refused by name, as anywhere else, and an unknown value names the choices.
#[tokio::test(flavor = "multi_thread")]
async fn the_durability_parameter_is_read_like_every_other_parameter() {
    let app = TestApp::spawn().await;
    let post = |query: &'static str| {
        app.client.post(format!("{}/events?{query}", app.address)).json(&event("durable", "m")).send()
    };
    for (query, field, rule) in
        [("durability=stored%00", "durability", "noNulCharacter"), ("durability=forever", "durability", "isIn")]
    {
        let response = post(query).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
        assert!(body["errors"][0]["constraints"][rule].is_string(), "{query}: {body}");
    }
    assert_eq!(post("durability=STORED").await.unwrap().status(), StatusCode::ACCEPTED);
}
