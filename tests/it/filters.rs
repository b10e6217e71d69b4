//! The `q=` filter language against a real PostgreSQL: a fixed data set, a table of queries
//! with the events each must find, the same answer from the store's SQL and from the
//! in-memory evaluation the live tail runs, and refusals that name their position.

use crate::support::{TestApp, open_tail, tailed, window};
use aurore_domain::Filter;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Ten events, named by their messages' first word.
fn data_set() -> Vec<Value> {
    let at = crate::support::iso(chrono::Utc::now());
    let event = |message: &str, metadata: Value| json!({"timestamp": at, "service": "filtered", "message": message, "metadata": metadata});
    vec![
        event("alpha upstream timeout after 30 s", json!({"status": 504, "region": "eu-west", "host": "web-1"})),
        event("bravo connection refused", json!({"status": 503, "region": "eu-central", "host": "web-2"})),
        event("charlie Disk Full on /var", json!({"status": 507, "region": "us-east", "user": {"id": "42"}})),
        event("delta login ok", json!({"status": 200, "region": "eu-west", "user": {"id": 42}})),
        event("echo 50% done_now", json!({"status": "500", "region": "us-east"})),
        event(
            "foxtrot retry scheduled",
            json!({"latency": 0.25, "region": null, "attributes": {"http.method": "GET"}}),
        ),
        event("golf TIMEOUT in payment", json!({"status": 500.5, "host": "db-1"})),
        event("hotel \"quoted\" words", json!({"tags": ["a", "b"], "host": "web-10"})),
        event("india no metadata", Value::Null),
        event("juliet user 42 signed up", json!({"user": {"id": "43"}, "region": "ap-south"})),
    ]
}

fn first_words(messages: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    messages.into_iter().map(|message| message.split(' ').next().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_query_finds_its_events_in_the_store_and_in_the_tails_evaluation() {
    let app = TestApp::spawn().await;
    let sent = data_set();
    let response =
        app.client.post(format!("{}/events?durability=stored", app.address)).json(&sent).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let cases: [(&str, &[&str]); 32] = [
        ("timeout", &["alpha", "golf"]),
        ("TimeOut", &["alpha", "golf"]),
        ("\"connection refused\"", &["bravo"]),
        ("refused connection", &["bravo"]),
        ("time*", &["alpha", "golf"]),
        ("50%", &["echo"]),
        ("done_now", &["echo"]),
        ("\"\\\"quoted\\\"\"", &["hotel"]),
        ("timeout OR refused", &["alpha", "bravo", "golf"]),
        ("timeout AND payment", &["golf"]),
        ("timeout -payment", &["alpha"]),
        ("NOT timeout NOT refused NOT metadata.status:*", &["foxtrot", "hotel", "india", "juliet"]),
        ("(timeout OR refused) metadata.region:eu*", &["alpha", "bravo"]),
        ("metadata.region:eu-west", &["alpha", "delta"]),
        ("metadata.region:\"us-east\"", &["charlie", "echo"]),
        ("metadata.user.id:42", &["charlie", "delta"]),
        ("metadata.user.id:\"42\"", &["charlie", "delta"]),
        ("metadata.status:500", &["echo"]),
        ("metadata.status>=500", &["alpha", "bravo", "charlie", "golf"]),
        ("metadata.status>500", &["alpha", "bravo", "charlie", "golf"]),
        ("metadata.status<=200", &["delta"]),
        ("metadata.status<500.5", &["delta"]),
        ("metadata.latency<1", &["foxtrot"]),
        ("metadata.region:*", &["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "juliet"]),
        ("metadata.region:null", &["foxtrot"]),
        ("-metadata.region:*", &["golf", "hotel", "india"]),
        ("metadata.host:web-1*", &["alpha", "hotel"]),
        ("metadata.host:WEB*", &[]),
        ("metadata.attributes.\"http.method\":GET", &["foxtrot"]),
        ("metadata.tags:a", &[]),
        ("message:\"disk full\"", &["charlie"]),
        ("metadata.user.id:42 OR 42", &["charlie", "delta", "juliet"]),
    ];
    let (from, to) = window();
    let stored: Vec<aurore_domain::Event> = {
        let query = [("service", "filtered"), ("from", from.as_str()), ("to", to.as_str()), ("pageSize", "100")];
        let body: Value = app.get_events(&query).await.json().await.unwrap();
        body["events"].as_array().unwrap().iter().map(as_event).collect()
    };
    assert_eq!(stored.len(), 10);
    for (query, expected) in cases {
        let response = app
            .get_events(&[("service", "filtered"), ("from", &from), ("to", &to), ("pageSize", "100"), ("q", query)])
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{query}");
        let body: Value = response.json().await.unwrap();
        let found = first_words(
            body["events"].as_array().unwrap().iter().map(|event| event["message"].as_str().unwrap().to_owned()),
        );
        let expected: BTreeSet<String> = expected.iter().map(|word| (*word).to_owned()).collect();
        assert_eq!(found, expected, "the store on {query}");
        assert_eq!(body["total"], expected.len(), "{query}: the total counts the same rows");
        let filter = Filter::parse(query).unwrap().unwrap();
        let evaluated =
            first_words(stored.iter().filter(|event| filter.matches(event)).map(|event| event.message.clone()));
        assert_eq!(evaluated, expected, "the tail's evaluation on {query}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_that_does_not_parse_is_refused_with_its_position_everywhere_q_is_taken() {
    let app = TestApp::spawn().await;
    let (from, to) = window();
    let explain = |q: &str| app.client.get(format!("{}/events/query/explain", app.address)).query(&[("q", q)]).send();
    let response = explain("(timeout OR metadata.status>=high").await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!((body["errorCode"].as_str(), body["position"].as_u64()), (Some("INVALID_QUERY"), Some(29)), "{body}");
    assert_eq!(body["expected"], "a number");

    let response = explain("timeout metadata.status>=500").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["canonical"], "\"timeout\" AND metadata.status>=500");
    assert_eq!(body["filter"]["op"], "and");
    assert_eq!(body["filter"]["of"][1]["of"]["test"], json!({"kind": "compare", "value": ["greater_or_equal", 500]}));
    assert_eq!(explain("").await.unwrap().json::<Value>().await.unwrap()["filter"], Value::Null);

    for (path, range) in [("/events", true), ("/events/export", true), ("/events/tail", false)] {
        let mut query = vec![("service", "s"), ("q", "level:error")];
        if range {
            query.extend([("from", from.as_str()), ("to", to.as_str())]);
        }
        let response = app.client.get(format!("{}{path}", app.address)).query(&query).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: Value = response.json().await.unwrap();
        let reason = body["errors"][0]["constraints"]["isQuery"].as_str().unwrap_or_default();
        assert!(reason.contains("at byte 0") && reason.contains("metadata.<key>"), "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_tail_and_the_export_apply_the_same_query() {
    let app = TestApp::spawn().await;
    let q = "metadata.status>=500 -timeout";
    let mut stream = open_tail(&app, &[("service", "filtered"), ("q", q)]).await;
    // What the query leaves out goes first: had the tail not filtered it, it would come first.
    let mut sent = data_set();
    sent.sort_by_key(|event| Filter::parse(q).unwrap().unwrap().matches(&as_event(event)));
    let response =
        app.client.post(format!("{}/events?durability=stored", app.address)).json(&sent).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let tailed: Vec<Value> =
        tailed(&mut stream, 2).await.iter().map(|data| serde_json::from_str(data).unwrap()).collect();
    let messages = first_words(tailed.iter().map(|event| event["message"].as_str().unwrap().to_owned()));
    assert_eq!(messages, ["bravo", "charlie"].map(str::to_owned).into());

    let (from, to) = window();
    let export = app
        .client
        .get(format!("{}/events/export", app.address))
        .query(&[("service", "filtered"), ("from", from.as_str()), ("to", to.as_str()), ("q", q)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported = first_words(
        export.lines().map(|line| serde_json::from_str::<Value>(line).unwrap()["message"].as_str().unwrap().to_owned()),
    );
    assert_eq!(exported, messages);
}

/// An event as sent, as the domain holds it.
fn as_event(sent: &Value) -> aurore_domain::Event {
    aurore_domain::Event {
        id: aurore_domain::EventId::from_uuid(uuid::Uuid::nil()),
        timestamp: chrono::Utc::now(),
        service: sent["service"].as_str().unwrap().to_owned(),
        message: sent["message"].as_str().unwrap().to_owned(),
        metadata: Some(sent["metadata"].clone()).filter(|metadata| !metadata.is_null()),
        ingested_at: chrono::Utc::now(),
    }
}
