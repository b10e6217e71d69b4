//! The console as the binary serves it (`/ui`), and the two API additions it reads:
//! `GET /services` and excluding filters (`metadata.<key>!=<value>`). What it does in a
//! browser is tested by `ui/e2e` in Chromium.

use crate::support::{Api, TestApp, event, poll, window};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION};
use serde_json::{Value, json};
use std::time::Duration;

/// The console's `index.html` as built by `just ui`; the suite needs the build.
fn built_index() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ui/dist/index.html");
    std::fs::read_to_string(path).unwrap_or_else(|_| panic!("{path} is missing: run `just ui` first"))
}

fn header<'a>(response: &'a reqwest::Response, name: &reqwest::header::HeaderName) -> &'a str {
    response.headers().get(name).map_or("", |value| value.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_is_served_with_its_caching_and_policy() {
    let app = TestApp::spawn().await;
    let index = built_index();
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let home = no_redirects.get(format!("{}/", app.address)).send().await.unwrap();
    assert_eq!((home.status(), header(&home, &LOCATION)), (StatusCode::FOUND, "/ui/"));

    // The page itself, and every path of the console's own links, revalidated each time.
    for path in ["/ui", "/ui/", "/ui/index.html", "/ui/events/0194", "/ui/dlq?status=pending"] {
        let page = app.get(path).await;
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&page, &CACHE_CONTROL), "no-cache", "{path}");
        assert!(header(&page, &CONTENT_TYPE).starts_with("text/html"), "{path}");
        assert!(header(&page, &CONTENT_SECURITY_POLICY).starts_with("default-src 'self'"), "{path}");
        assert_eq!(page.text().await.unwrap(), index, "{path}");
    }

    // A hashed script: a year, its type, and 304 for its ETag.
    let script = index.split("src=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("a script in index.html");
    assert!(script.starts_with("/ui/assets/"), "{script}");
    let asset = app.get(script).await;
    assert_eq!(asset.status(), StatusCode::OK);
    assert_eq!(header(&asset, &CACHE_CONTROL), "public, max-age=31536000, immutable");
    assert!(header(&asset, &CONTENT_TYPE).contains("javascript"), "{}", header(&asset, &CONTENT_TYPE));
    let etag = header(&asset, &ETAG).to_owned();
    let again = app.client.get(format!("{}{script}", app.address)).header(IF_NONE_MATCH, &etag).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    let head = app.client.head(format!("{}{script}", app.address)).send().await.unwrap();
    assert_eq!((head.status(), header(&head, &ETAG)), (StatusCode::OK, etag.as_str()));

    // A missing asset fails as one instead of loading the page in its place.
    assert_eq!(app.get("/ui/assets/missing-0000.js").await.status(), StatusCode::NOT_FOUND);
    // The API keeps its own, stricter policy.
    let api = app.get("/health/live").await;
    assert!(header(&api, &CONTENT_SECURITY_POLICY).starts_with("default-src 'none'"));
}

/// `GET path` written as is on a fresh connection; the status and the body.
async fn raw_get(address: &str, path: &str) -> (StatusCode, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code: u16 =
        head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("{path}: {head}"));
    (StatusCode::from_u16(code).unwrap(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn no_spelling_of_a_console_path_reads_outside_the_bundle() {
    let app = TestApp::spawn().await;
    let index = built_index();
    let spellings = [
        "/ui/../Cargo.toml",
        "/ui/..%2fCargo.toml",
        "/ui/..%2F..%2FCargo.toml",
        "/ui/%2e%2e/%2e%2e/Cargo.toml",
        "/ui/%2E%2E%2F%2E%2E%2FCargo.toml",
        "/ui/assets/../../../Cargo.toml",
        "/ui/assets/%2e%2e%2f%2e%2e%2f%2e%2e%2fCargo.toml",
        "/ui/..%5c..%5cCargo.toml",
        "/ui/....//....//Cargo.toml",
        "/ui//etc/passwd",
        "/ui/%2fetc%2fpasswd",
        "/ui/index.html%00.js",
        "/ui/./index.html",
        "/ui/assets/%00",
        "/ui/%c0%ae%c0%ae/Cargo.toml",
    ];
    for path in spellings {
        // Sent byte for byte: an HTTP client library would normalise `..` and `%2e` away.
        let (status, body) = raw_get(&app.address, path).await;
        assert!(!body.contains("[workspace]") && !body.contains("root:"), "{path} read a file outside the bundle");
        // Either the page (a console route it does not know) or a plain refusal.
        assert!(body == index || status.is_client_error(), "{path}: {status} {body:.80}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn services_are_listed_with_their_counts_from_the_rollups() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get_json("/services").await, json!({"services": []}));
    let batch: Vec<Value> = (0..3).map(|i| event("checkout", &format!("c{i}"))).chain([event("auth", "a0")]).collect();
    assert_eq!(app.post_json(&Value::Array(batch)).await.status(), StatusCode::ACCEPTED);
    let listed = poll(
        Duration::from_secs(10),
        || app.get_json("/services"),
        |body| body["services"].as_array().unwrap().len() == 2,
    )
    .await;
    let services = listed["services"].as_array().unwrap();
    let counts: Vec<(&str, u64)> =
        services.iter().map(|entry| (entry["service"].as_str().unwrap(), entry["events"].as_u64().unwrap())).collect();
    assert_eq!(counts, [("auth", 1), ("checkout", 3)]);
    assert!(services[0]["latestHour"].as_str().unwrap().ends_with(":00:00.000Z"), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_excluding_filter_leaves_out_its_value_and_keeps_events_without_the_key() {
    let app = TestApp::spawn().await;
    let mut prod = event("billing", "prod");
    prod["metadata"] = json!({"env": "prod"});
    let mut dev = event("billing", "dev");
    dev["metadata"] = json!({"env": "dev"});
    let bare = event("billing", "bare");
    assert_eq!(app.post_json(&json!([prod, dev, bare])).await.status(), StatusCode::ACCEPTED);
    let (from, to) = window();
    let page = |filter: &'static str| {
        let (from, to) = (from.clone(), to.clone());
        let app = &app;
        async move {
            let response =
                app.get_events(&[("service", "billing"), ("from", &from), ("to", &to), (filter, "prod")]).await;
            assert_eq!(response.status(), StatusCode::OK);
            let body: Value = response.json().await.unwrap();
            let mut messages: Vec<String> =
                body["events"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap().to_owned()).collect();
            messages.sort();
            (messages, body["total"].clone())
        }
    };
    poll(Duration::from_secs(10), || page("metadata.env"), |(messages, _)| messages.len() == 1).await;
    assert_eq!(page("metadata.env!").await, (vec!["bare".to_owned(), "dev".to_owned()], json!(2)));
    // The same name without its key path is still refused, `!` or not.
    let refused = app.get_events(&[("service", "billing"), ("from", &from), ("to", &to), ("metadata.!", "x")]).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
}
