//! The shippers' protocols against the real server and PostgreSQL: OTLP/HTTP logs,
//! Elasticsearch bulk and Loki push, sent by hand-built bodies, by replayed requests of
//! shippers that cannot be installed here, and by the real client libraries.

use crate::support::{self, Service, TestApp, TestDatabase, poll};
use aurore_http::loki_push as loki_wire;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, KeyValueList, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use serde_json::{Value, json};
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const STORED_WITHIN: Duration = Duration::from_secs(20);

/// Every stored event of `service` as `{timestamp, message, metadata}`, by message.
async fn stored(database: &TestDatabase, service: &str) -> Vec<Value> {
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        row: String,
    }
    let mut connection = database.connection().await;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT json_build_object('timestamp', to_char(\"timestamp\" AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
         'message', message, 'metadata', metadata)::text AS row FROM events WHERE service = $1 ORDER BY message",
    )
    .bind::<Text, _>(service)
    .load(&mut connection)
    .await
    .unwrap_or_default();
    rows.into_iter().map(|row| serde_json::from_str(&row.row).unwrap()).collect()
}

async fn count(database: &TestDatabase, service: &str) -> i64 {
    database.count(&format!("SELECT count(*) AS n FROM events WHERE service = '{service}'")).await
}

async fn wait_for(database: &TestDatabase, service: &str, expected: i64) -> i64 {
    let sql = format!("SELECT count(*) AS n FROM events WHERE service = '{service}'");
    database.wait_for_count(&sql, expected, STORED_WITHIN).await
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn text(value: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) })
}

fn pair(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue { key: key.to_owned(), value, ..KeyValue::default() }
}

fn nanos(instant: chrono::DateTime<chrono::Utc>) -> u64 {
    u64::try_from(instant.timestamp_nanos_opt().unwrap()).unwrap()
}

/// An export of `records` under one resource named `service`.
fn export(service: &str, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![pair("service.name", text(service)), pair("host.name", text("node-1"))],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "checkout".into(),
                    version: "2.1".into(),
                    ..InstrumentationScope::default()
                }),
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

fn record(message: &str, at: chrono::DateTime<chrono::Utc>) -> LogRecord {
    LogRecord { time_unix_nano: nanos(at), body: text(message), severity_number: 9, ..LogRecord::default() }
}

async fn post_otlp(app: &TestApp, export: &ExportLogsServiceRequest) -> reqwest::Response {
    app.client
        .post(format!("{}/v1/logs", app.address))
        .header(CONTENT_TYPE, "application/x-protobuf")
        .header(CONTENT_ENCODING, "gzip")
        .body(gzip(&export.encode_to_vec()))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_protobuf_records_become_events_with_severity_trace_ids_attributes_and_resource() {
    let app = TestApp::spawn().await;
    let at = chrono::Utc::now() - chrono::Duration::seconds(5);
    let trace_id: Vec<u8> = (1..=16).collect();
    let span_id: Vec<u8> = (1..=8).collect();
    let structured = AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: vec![pair("order", Some(AnyValue { value: Some(any_value::Value::IntValue(42)) }))],
        })),
    };
    let records = vec![
        LogRecord {
            severity_text: "Warning".into(),
            severity_number: 13,
            trace_id: trace_id.clone(),
            span_id: span_id.clone(),
            attributes: vec![
                pair("http.status_code", Some(AnyValue { value: Some(any_value::Value::IntValue(503)) })),
                pair("retry", Some(AnyValue { value: Some(any_value::Value::BoolValue(true)) })),
            ],
            ..record("payment declined", at)
        },
        LogRecord { body: Some(structured), severity_number: 17, ..record("", at) },
        // No event time: the observed time stands in.
        LogRecord { time_unix_nano: 0, observed_time_unix_nano: nanos(at), ..record("observed only", at) },
        // No body: the event name is the message.
        LogRecord { body: None, event_name: "cart.abandoned".into(), ..record("", at) },
        // Refused: longer than the message limit; the others are kept.
        record(&"x".repeat(2001), at),
        // Refused: an all-zero trace id is "unset", not an error, but no body nor name is.
        LogRecord { body: None, trace_id: vec![0; 16], ..record("", at) },
    ];
    let response = post_otlp(&app, &export("otlp-proto", records)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/x-protobuf");
    let reply = ExportLogsServiceResponse::decode(response.bytes().await.unwrap()).unwrap();
    let partial = reply.partial_success.expect("two records were refused");
    assert_eq!(partial.rejected_log_records, 2);
    assert!(
        partial.error_message.contains("record 4") && partial.error_message.contains("2000"),
        "{}",
        partial.error_message
    );
    assert!(partial.error_message.contains("record 5"), "{}", partial.error_message);

    assert_eq!(wait_for(&app.database, "otlp-proto", 4).await, 4);
    let metrics =
        app.client.get(format!("{}/metrics/prometheus", app.address)).send().await.unwrap().text().await.unwrap();
    for (outcome, count) in [("accepted", 4), ("rejected", 2)] {
        let line = format!("aurore_shipper_events_total{{protocol=\"otlp\",outcome=\"{outcome}\"}} {count}");
        assert!(metrics.lines().any(|found| found == line), "{line} in\n{metrics}");
    }
    let events = stored(&app.database, "otlp-proto").await;
    let by_message = |message: &str| {
        events.iter().find(|event| event["message"] == message).unwrap_or_else(|| panic!("{message} in {events:?}"))
    };
    let declined = by_message("payment declined");
    assert_eq!(declined["timestamp"], at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
    assert_eq!(
        declined["metadata"],
        json!({
            "severity": "Warning", "severity_number": 13,
            "trace_id": "0102030405060708090a0b0c0d0e0f10", "span_id": "0102030405060708",
            "attributes": {"http.status_code": 503, "retry": true},
            "resource": {"host.name": "node-1"},
            "scope": {"name": "checkout", "version": "2.1"},
        })
    );
    let structured = by_message(r#"{"order":42}"#);
    assert_eq!(structured["metadata"]["severity"], "ERROR", "the number's name when no text is sent");
    by_message("observed only");
    assert_eq!(by_message("cart.abandoned")["metadata"]["event_name"], "cart.abandoned");

    // What was sent is what is found: the metadata filter reaches OTLP's fields too.
    let (from, to) = support::window();
    let found: Value = app
        .get_events(&[("service", "otlp-proto"), ("from", &from), ("to", &to), ("metadata.severity_number", "13")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["total"], 1, "{found}");
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_json_takes_integers_as_strings_or_numbers_and_answers_in_json() {
    let app = TestApp::spawn().await;
    let at = nanos(chrono::Utc::now());
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "otlp-json"}}]},
        "scopeLogs": [{"scope": {"name": "js"}, "logRecords": [
            {"timeUnixNano": at.to_string(), "severityNumber": 9, "body": {"stringValue": "as a string"},
             "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
             "attributes": [{"key": "n", "value": {"intValue": "9007199254740993"}},
                            {"key": "f", "value": {"doubleValue": 0.5}},
                            {"key": "b", "value": {"bytesValue": "aGk="}},
                            {"key": "list", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": 1}]}}}]},
            {"time_unix_nano": at, "body": {"stringValue": "as a number, snake_case"}},
            {"timeUnixNano": at.to_string(), "body": {"stringValue": ""}}
        ]}]
    }]});
    let response = app.client.post(format!("{}/v1/logs", app.address)).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["partialSuccess"]["rejectedLogRecords"], "1", "{reply}");
    assert_eq!(wait_for(&app.database, "otlp-json", 2).await, 2);
    let events = stored(&app.database, "otlp-json").await;
    assert_eq!(events[0]["message"], "as a number, snake_case");
    assert_eq!(
        events[1]["metadata"],
        json!({"severity": "INFO", "severity_number": 9, "trace_id": "5b8efff798038103d269b633813fc60c",
               "span_id": "eee19b7ec3c1b174", "scope": {"name": "js"},
               "attributes": {"n": 9_007_199_254_740_993_i64, "f": 0.5, "b": "aGk=", "list": ["a", 1]}})
    );

    // Nothing to export is a success with nothing stored.
    let response = app.client.post(format!("{}/v1/logs", app.address)).json(&json!({})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({}));
}

/// A body each protocol must refuse with a 4xx, storing nothing.
struct Hostile {
    what: &'static str,
    path: &'static str,
    content_type: &'static str,
    encoding: Option<&'static str>,
    body: Vec<u8>,
}

fn hostile_bodies() -> Vec<Hostile> {
    let many: Vec<LogRecord> = (0..10_001).map(|n| record(&n.to_string(), chrono::Utc::now())).collect();
    let deep = (0..200).fold(
        json!({"stringValue": "x"}),
        |inner, _| json!({"kvlistValue": {"values": [{"key": "k", "value": inner}]}}),
    );
    let deep_json = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": deep}]}]}]});
    let snappy_bomb = {
        // A snappy block that declares far more than the body limit.
        let mut bytes = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
        bytes.extend([0u8; 16]);
        bytes
    };
    let es_many = "{\"index\":{}}\n{\"message\":\"m\",\"service.name\":\"hostile\"}\n".repeat(10_001);
    let otlp = |what, content_type, encoding, body| Hostile { what, path: "/v1/logs", content_type, encoding, body };
    let es = |what, body: &str| Hostile {
        what,
        path: "/es/_bulk",
        content_type: "application/x-ndjson",
        encoding: None,
        body: body.as_bytes().to_vec(),
    };
    let loki =
        |what, content_type, body| Hostile { what, path: "/loki/api/v1/push", content_type, encoding: None, body };
    vec![
        otlp("random protobuf", "application/x-protobuf", None, (0..=255u8).rev().cycle().take(4096).collect()),
        otlp(
            "truncated protobuf",
            "application/x-protobuf",
            None,
            export("hostile", vec![record("m", chrono::Utc::now())]).encode_to_vec()[..20].to_vec(),
        ),
        otlp("gzip that is not", "application/x-protobuf", Some("gzip"), b"not gzip at all".to_vec()),
        otlp("unknown encoding", "application/x-protobuf", Some("lz4"), vec![]),
        otlp("text/plain", "text/plain", None, b"hello".to_vec()),
        otlp("form", "application/x-www-form-urlencoded", None, b"a=b".to_vec()),
        otlp("bad JSON", "application/json", None, b"{\"resourceLogs\": [".to_vec()),
        otlp("JSON of the wrong shape", "application/json", None, br#"{"resourceLogs": {"a": 1}}"#.to_vec()),
        otlp(
            "an unknown AnyValue",
            "application/json",
            None,
            br#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"evilValue": 1}}]}]}]}"#.to_vec(),
        ),
        otlp(
            "a negative time",
            "application/json",
            None,
            br#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "-1"}]}]}]}"#.to_vec(),
        ),
        otlp("nesting past the parser's limit", "application/json", None, deep_json.to_string().into_bytes()),
        otlp("too many records", "application/x-protobuf", None, export("hostile", many).encode_to_vec()),
        otlp("over the body limit", "application/json", None, vec![b' '; 8 * 1024 * 1024 + 1]),
        es("not JSON", "{\"index\":{}\n"),
        es("an unknown action", "{\"upsert\":{}}\n{}\n"),
        es("an action with no document", "{\"index\":{}}\n"),
        es("two actions on a line", "{\"index\":{},\"create\":{}}\n{}\n"),
        es("too many documents", &es_many),
        loki("JSON of the wrong shape", "application/json", br#"{"streams": {"stream": 1}}"#.to_vec()),
        loki("protobuf without snappy", "application/x-protobuf", b"\x0a\x05hello".to_vec()),
        loki("a snappy bomb", "application/x-protobuf", snappy_bomb),
        loki(
            "snappy of garbage",
            "application/x-protobuf",
            snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap(),
        ),
        loki("text/plain", "text/plain", b"{}".to_vec()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_bodies_on_every_protocol_get_a_4xx_and_store_nothing() {
    let app = TestApp::spawn().await;
    for hostile in hostile_bodies() {
        let mut request = app
            .client
            .post(format!("{}{}", app.address, hostile.path))
            .header(CONTENT_TYPE, hostile.content_type)
            .body(hostile.body);
        if let Some(encoding) = hostile.encoding {
            request = request.header(CONTENT_ENCODING, encoding);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response.headers().get(CONTENT_TYPE).map(|value| value.to_str().unwrap().to_owned());
        let body = response.bytes().await.unwrap();
        assert!(status.is_client_error(), "{} on {}: {status} {body:?}", hostile.what, hostile.path);
        // OTLP refusals are a `google.rpc.Status` in the request's encoding.
        if hostile.path == "/v1/logs" {
            let status = match content_type.as_deref() {
                Some("application/x-protobuf") => aurore_http::OtlpStatus::decode(body).unwrap(),
                _ => {
                    let json: Value = serde_json::from_slice(&body).unwrap();
                    aurore_http::OtlpStatus {
                        code: json["code"].as_i64().unwrap() as i32,
                        message: json["message"].as_str().unwrap().into(),
                    }
                }
            };
            assert!(status.code == 3 && !status.message.is_empty(), "{}: {status:?}", hostile.what);
        }
    }
    // Everything valid in them would be stored under these services; nothing is.
    let all = app.database.count("SELECT count(*) AS n FROM events").await;
    assert_eq!(all, 0);
    let response = app.client.get(format!("{}/health", app.address)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the server is still up");
}

async fn post_bulk(app: &TestApp, path: &str, body: &str) -> Value {
    let response = app
        .client
        .post(format!("{}{path}", app.address))
        .header(CONTENT_TYPE, "application/x-ndjson")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-elastic-product"], "Elasticsearch");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn elasticsearch_bulk_stores_index_and_create_refuses_the_rest_per_item_and_an_id_once() {
    let app = TestApp::spawn().await;
    let now = support::iso(chrono::Utc::now());
    let body = [
        json!({"index": {"_index": "from-the-action", "_id": "a-1", "_type": "_doc"}}),
        json!({"@timestamp": now, "service.name": "es-bulk", "message": "indexed", "level": "info"}),
        json!({"create": {}}),
        json!({"timestamp": now, "service": {"name": "es-bulk"}, "log": "from log, nested service"}),
        json!({"update": {"_id": "a-1"}}),
        json!({"doc": {"message": "changed"}}),
        json!({"delete": {"_id": "a-1"}}),
        json!({"index": {}}),
        json!({"@timestamp": now, "service.name": "es-bulk"}),
        json!({"index": {}}),
        json!({"@timestamp": "yesterday-ish", "service.name": "es-bulk", "message": "bad date"}),
        json!({"index": {}}),
        json!(["not", "an", "object"]),
    ]
    .iter()
    .map(|line| format!("{line}\n"))
    .collect::<String>();
    let reply = post_bulk(&app, "/es/logs-app/_bulk?durability=stored", &body).await;
    assert_eq!(reply["errors"], true);
    let items = reply["items"].as_array().unwrap();
    let statuses: Vec<(String, u64)> = items
        .iter()
        .map(|item| {
            let (action, result) = item.as_object().unwrap().iter().next().unwrap();
            (action.clone(), result["status"].as_u64().unwrap())
        })
        .collect();
    let expected = [
        ("index", 201),
        ("create", 201),
        ("update", 400),
        ("delete", 400),
        ("index", 400),
        ("index", 400),
        ("index", 400),
    ];
    assert_eq!(statuses, expected.map(|(action, status)| (action.to_owned(), status)), "{reply}");
    assert_eq!(items[0]["index"]["_index"], "from-the-action", "an action's index wins over the path's");
    assert_eq!(items[1]["create"]["_index"], "logs-app");
    assert!(items[4]["index"]["error"]["reason"].as_str().unwrap().contains("message"), "{reply}");
    assert!(reply["took"].is_u64());

    // Sent again, the document with an `_id` is not stored twice.
    let again = format!("{}\n{}\n", body.lines().next().unwrap(), body.lines().nth(1).unwrap());
    post_bulk(&app, "/es/_bulk?durability=stored", &again).await;
    // A document with no service field takes its index's name.
    post_bulk(
        &app,
        "/es/_bulk",
        &format!("{}\n{}\n", json!({"create": {"_index": "es-by-index"}}), json!({"message": "m"})),
    )
    .await;

    assert_eq!(wait_for(&app.database, "es-by-index", 1).await, 1);
    assert_eq!(wait_for(&app.database, "es-bulk", 2).await, 2);
    let events = stored(&app.database, "es-bulk").await;
    assert_eq!(events[0]["message"], "from log, nested service");
    assert_eq!(events[0]["metadata"], json!({"service": {}, "_index": "logs-app"}));
    assert_eq!(events[1]["metadata"], json!({"level": "info", "_index": "from-the-action", "_id": "a-1"}));
    let by_index = stored(&app.database, "es-by-index").await;
    let stamped = chrono::DateTime::parse_from_rfc3339(by_index[0]["timestamp"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now() - stamped.to_utc()).num_seconds().abs() < 60, "no @timestamp: the time it arrived");
}

#[tokio::test(flavor = "multi_thread")]
async fn elasticsearch_probes_answer_as_a_version_8_cluster_with_the_product_header() {
    let app = TestApp::spawn().await;
    for path in ["/es", "/es/"] {
        let response = app.client.get(format!("{}{path}", app.address)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-elastic-product"], "Elasticsearch");
        let info: Value = response.json().await.unwrap();
        assert!(info["version"]["number"].as_str().unwrap().starts_with("8."), "{info}");
        let head = app.client.head(format!("{}{path}", app.address)).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK);
    }
    let health: Value =
        app.client.get(format!("{}/es/_cluster/health", app.address)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "green");
    let license: Value =
        app.client.get(format!("{}/es/_license", app.address)).send().await.unwrap().json().await.unwrap();
    assert_eq!(license["license"]["status"], "active");
    // Even a path Aurore does not serve answers as Elasticsearch would be expected to.
    let missing = app.client.get(format!("{}/es/_ilm/policy", app.address)).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.headers()["x-elastic-product"], "Elasticsearch");
    let elsewhere = app.client.get(format!("{}/esx", app.address)).send().await.unwrap();
    assert!(elsewhere.headers().get("x-elastic-product").is_none());
}

fn loki_entry(line: &str, at: chrono::DateTime<chrono::Utc>) -> loki_wire::Entry {
    loki_wire::Entry {
        timestamp: Some(loki_wire::Timestamp {
            seconds: at.timestamp(),
            nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap(),
        }),
        line: line.to_owned(),
        structured_metadata: vec![],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn loki_push_in_snappy_protobuf_and_json_keeps_labels_and_structured_metadata() {
    let app = TestApp::spawn().await;
    let at = chrono::Utc::now();
    let push = loki_wire::PushRequest {
        streams: vec![
            loki_wire::Stream {
                labels: r#"{job="batch", service_name="loki-proto", env="prod", note="a \"quoted\" value"}"#.into(),
                entries: vec![
                    loki_wire::Entry {
                        structured_metadata: vec![loki_wire::LabelPair {
                            name: "trace_id".into(),
                            value: "abc".into(),
                        }],
                        ..loki_entry("first", at)
                    },
                    loki_entry("second", at),
                ],
            },
            loki_wire::Stream { labels: "{app=\"loki-proto\"".into(), entries: vec![loki_entry("bad labels", at)] },
        ],
    };
    let body = snap::raw::Encoder::new().compress_vec(&push.encode_to_vec()).unwrap();
    let response = app
        .client
        .post(format!("{}/loki/api/v1/push", app.address))
        .header(CONTENT_TYPE, "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "one entry of three was refused");
    let reason = response.text().await.unwrap();
    assert!(reason.contains("1 of 3") && reason.contains("record 2"), "{reason}");
    assert_eq!(wait_for(&app.database, "loki-proto", 2).await, 2);
    let events = stored(&app.database, "loki-proto").await;
    assert_eq!(
        events[0]["metadata"],
        json!({"job": "batch", "env": "prod", "note": "a \"quoted\" value", "trace_id": "abc"})
    );
    assert_eq!(events[0]["timestamp"], at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());

    let ns = at.timestamp_nanos_opt().unwrap().to_string();
    let json_push = json!({"streams": [
        {"stream": {"app": "loki-json", "job": "cron"}, "values": [[ns, "plain"], [ns, "with metadata", {"user": "7"}]]},
        {"labels": "{service=\"loki-json\"}", "entries": [{"ts": support::iso(at), "line": "legacy shape"}]},
    ]});
    let response = app.client.post(format!("{}/loki/api/v1/push", app.address)).json(&json_push).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(wait_for(&app.database, "loki-json", 3).await, 3);
    let events = stored(&app.database, "loki-json").await;
    let messages: Vec<&str> = events.iter().map(|event| event["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["legacy shape", "plain", "with metadata"]);
    // `service` named the service and is not repeated; `app` is then only a label.
    assert_eq!(events[0]["metadata"], Value::Null);
    assert_eq!(events[2]["metadata"], json!({"job": "cron", "user": "7"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_and_event_rate_limits_hold_on_every_protocol_and_every_credential_shippers_send() {
    use base64::Engine as _;
    let app = TestApp::spawn_with(|settings| {
        settings.auth.api_keys = aurore_http::KeyDigests::of(["shipper-key"]);
        settings.rate_limit = aurore::settings::RateLimitConfig {
            ingest_per_second: 5,
            burst_factor: 2.0,
            ..aurore::settings::RateLimitConfig::off()
        };
    })
    .await;
    let encoded = |pair: &str| base64::engine::general_purpose::STANDARD.encode(pair);
    let otlp = |records: usize| {
        let records = (0..records).map(|n| record(&format!("keyed {n}"), chrono::Utc::now())).collect();
        gzip(&export("keyed", records).encode_to_vec())
    };
    let send = |path: &str, content_type: &str, authorization: Option<String>, body: Vec<u8>| {
        let mut request =
            app.client.post(format!("{}{path}", app.address)).header(CONTENT_TYPE, content_type).body(body);
        if path == "/v1/logs" {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        request.send()
    };
    let ndjson = |n: usize| {
        (0..n)
            .map(|i| {
                format!(
                    "{}\n{}\n",
                    json!({"index": {}}),
                    json!({"service.name": "keyed", "message": format!("es {i}")})
                )
            })
            .collect::<String>()
            .into_bytes()
    };
    let loki = |line: &str| {
        json!({"streams": [{"stream": {"app": "keyed"}, "values": [[chrono::Utc::now().timestamp_nanos_opt().unwrap().to_string(), line]]}]}).to_string().into_bytes()
    };

    // The credentials each shipper sends, each batch counted in events against a burst of 10.
    let basic = Some(format!("Basic {}", encoded("fluent-bit:shipper-key")));
    let response = send("/loki/api/v1/push", "application/json", basic, loki("one")).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let api_key = Some(format!("ApiKey {}", encoded("vector:shipper-key")));
    let response = send("/es/_bulk", "application/x-ndjson", api_key, ndjson(2)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bearer = Some("Bearer shipper-key".to_owned());
    let response = send("/v1/logs", "application/x-protobuf", bearer.clone(), otlp(7)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["ratelimit-remaining"], "0");
    let response = send("/v1/logs", "application/x-protobuf", bearer.clone(), otlp(1)).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "OTLP's retryable code");
    assert!(response.headers().contains_key("retry-after"));
    let response = poll(
        Duration::from_secs(5),
        || send("/v1/logs", "application/x-protobuf", bearer.clone(), otlp(11)),
        |response| response.as_ref().is_ok_and(|response| response.status() != StatusCode::TOO_MANY_REQUESTS),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "a batch larger than the whole burst");
    assert_eq!(wait_for(&app.database, "keyed", 10).await, 10);

    // Without a key, with an unknown one, or with the key where a shipper does not put it.
    let refused = [
        ("/v1/logs", "application/x-protobuf", None, otlp(1)),
        ("/v1/logs", "application/x-protobuf", Some(format!("Basic {}", encoded("shipper-key:"))), otlp(1)),
        ("/es/_bulk", "application/x-ndjson", Some(format!("ApiKey {}", encoded("id:wrong"))), ndjson(1)),
        ("/loki/api/v1/push", "application/json", Some("Basic shipper-key".to_owned()), loki("x")),
        ("/loki/api/v1/push", "application/json", Some(format!("Digest {}", encoded("u:shipper-key"))), loki("x")),
    ];
    for (path, content_type, authorization, body) in refused {
        // Refusals draw from the rate limit too (guessing keys is throttled): wait for a token.
        let response = poll(
            Duration::from_secs(5),
            || send(path, content_type, authorization.clone(), body.clone()),
            |response| response.as_ref().is_ok_and(|response| response.status() != StatusCode::TOO_MANY_REQUESTS),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path} with {authorization:?}");
    }
    // Percent-encoded spellings of the routes never get past the guard.
    for path in ["/v1/%6Cogs", "/v1%2Flogs", "/es/%5Fbulk", "/es/x%2F_bulk", "/loki/api/v1/pu%73h", "/V1/LOGS"] {
        let response = poll(
            Duration::from_secs(5),
            || send(path, "application/x-protobuf", None, otlp(1)),
            |response| response.as_ref().is_ok_and(|response| response.status() != StatusCode::TOO_MANY_REQUESTS),
        )
        .await
        .unwrap();
        assert!(
            matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND),
            "{path}: {}",
            response.status()
        );
    }
    assert_eq!(count(&app.database, "keyed").await, 10, "only the keyed batches were stored");
}

/// The real clients' scripts, and the interpreters `scripts/clients.sh` installs them for.
fn clients() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// Runs a client script to its end and returns what it printed.
async fn run_client(program: &str, script: &str, args: &[&str]) -> String {
    let venv = |name: &str| {
        (clients().join(format!("../../{name}/bin/python")), clients().join(format!("../../{name}/.installed")))
    };
    let (program, ready) = match program {
        "python" => venv(".venv-clients"),
        "python-es8" => venv(".venv-clients-es8"),
        _ => ("node".into(), clients().join("node_modules/.installed")),
    };
    assert!(ready.exists(), "the shipper clients are not installed: run scripts/clients.sh (`just test` does)");
    let run = tokio::process::Command::new(&program).arg(clients().join(script)).args(args).kill_on_drop(true).output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the client finished")
        .expect("start the client");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script} failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn python_opentelemetry_logging_handler_ships_a_thousand_gzipped_records_with_their_trace() {
    let app = TestApp::spawn().await;
    let printed = run_client("python", "otel_logs.py", &[&app.address, "py-otel", "1000"]).await;
    let span: Value = serde_json::from_str(printed.trim()).unwrap();
    assert_eq!(wait_for(&app.database, "py-otel", 1000).await, 1000);
    let events = stored(&app.database, "py-otel").await;
    let messages: std::collections::HashSet<String> =
        events.iter().map(|event| event["message"].as_str().unwrap().to_owned()).collect();
    assert_eq!(messages, (0..1000).map(|n| format!("record {n} of 1000")).collect());
    for event in &events {
        let metadata = &event["metadata"];
        let number: u64 = event["message"].as_str().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(metadata["severity_number"], if number % 2 == 1 { 13 } else { 9 }, "{event}");
        assert_eq!(metadata["trace_id"], span["trace_id"], "{event}");
        assert_eq!(metadata["span_id"], span["span_id"], "{event}");
        assert_eq!(metadata["attributes"]["order.id"], number, "{event}");
        assert_eq!(metadata["resource"]["deployment.environment"], "test", "{event}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_opentelemetry_exporter_ships_json_records() {
    let app = TestApp::spawn().await;
    run_client("node", "otel_logs.mjs", &[&app.address, "js-otel", "300"]).await;
    assert_eq!(wait_for(&app.database, "js-otel", 300).await, 300);
    let events = stored(&app.database, "js-otel").await;
    let first = events.iter().find(|event| event["message"] == "js record 7").unwrap();
    assert_eq!(first["metadata"]["severity"], "ERROR");
    assert_eq!(first["metadata"]["severity_number"], 17);
    assert_eq!(first["metadata"]["attributes"], json!({"order.id": 7, "retried": false}));
    assert_eq!(first["metadata"]["scope"], json!({"name": "shipper", "version": "1.0.0"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn python_elasticsearch_client_passes_its_product_check_and_bulk_indexes_a_thousand_documents() {
    elasticsearch_client_bulk("python").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_elasticsearch_8_client_passes_its_product_check_and_bulk_indexes_a_thousand_documents() {
    elasticsearch_client_bulk("python-es8").await;
}

/// The official client (9.x, or 8.x from its own environment) with an API key as `(id, key)`.
async fn elasticsearch_client_bulk(python: &str) {
    let app = TestApp::spawn_with(|settings| settings.auth.api_keys = aurore_http::KeyDigests::of(["es-key"])).await;
    let printed = run_client(python, "elastic_bulk.py", &[&app.address, "py-es", "1000", "es-key"]).await;
    let seen: Value = serde_json::from_str(printed.trim()).unwrap();
    assert!(seen["version"].as_str().unwrap().starts_with("8."), "{seen}");
    assert_eq!(seen["stored"], 1000);
    assert_eq!(seen["failures"], json!([]));
    assert_eq!(seen["refused"], json!([400, 400]), "the empty message and the delete, item by item");
    assert_eq!(wait_for(&app.database, "py-es", 1001).await, 1001);
    let events = stored(&app.database, "py-es").await;
    let document = events.iter().find(|event| event["message"] == "document 5").unwrap();
    assert_eq!(document["metadata"]["http"], json!({"status": 202}));
    assert_eq!(document["metadata"]["_id"], "doc-5");
    assert!(events.iter().any(|event| event["message"] == "kept"));
}

#[tokio::test(flavor = "multi_thread")]
async fn python_logging_loki_pushes_json_with_its_labels() {
    let app = TestApp::spawn().await;
    run_client("python", "loki_logging.py", &[&app.address, "py-loki", "200"]).await;
    assert_eq!(wait_for(&app.database, "py-loki", 200).await, 200);
    let events = stored(&app.database, "py-loki").await;
    let line = events.iter().find(|event| event["message"] == "line 12").unwrap();
    assert_eq!(line["metadata"]["env"], "test");
    assert_eq!(line["metadata"]["order"], "2");
    assert_eq!(line["metadata"]["severity"], "info");
}

#[tokio::test(flavor = "multi_thread")]
async fn winston_loki_pushes_snappy_protobuf_with_its_labels() {
    let app =
        TestApp::spawn_with(|settings| settings.auth.api_keys = aurore_http::KeyDigests::of(["winston-key"])).await;
    run_client("node", "winston_loki.mjs", &[&app.address, "winston", "300", "winston-key"]).await;
    assert_eq!(wait_for(&app.database, "winston", 300).await, 300);
    let events = stored(&app.database, "winston").await;
    // winston-loki writes the record's other fields after the message: kept as sent.
    let line = events.iter().find(|event| event["message"] == r#"winston line 4 {"level":"info"}"#).unwrap();
    assert_eq!(line["metadata"]["env"], "test");
    assert_eq!(line["metadata"]["level"], "info");
    assert_eq!(line["metadata"]["shard"], "1");
}

/// A request as a shipper that cannot be installed here sends it: its method, path and
/// query, headers and compression, and a body of the shape it writes.
struct Replayed {
    shipper: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: StatusCode,
    /// The service its events are stored under, and how many.
    service: &'static str,
    events: i64,
}

fn replayed_requests() -> Vec<Replayed> {
    let now = chrono::Utc::now();
    let ns = now.timestamp_nanos_opt().unwrap().to_string();
    let stamp = |format: &str| now.format(format).to_string();
    // The collector's filelog receiver: no event time, the observed time, the file as an
    // attribute; the otlphttp exporter sends protobuf with gzip.
    let collector = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![pair("service.name", text("replayed-collector")), pair("host.name", text("node-7"))],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: (0..3)
                    .map(|n| LogRecord {
                        observed_time_unix_nano: nanos(now),
                        body: text(&format!("GET /healthz 200 {n}")),
                        attributes: vec![pair("log.file.name", text("access.log"))],
                        ..LogRecord::default()
                    })
                    .collect(),
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    // Vector's loki sink: protobuf with snappy, its labels as configured.
    let vector_loki = loki_wire::PushRequest {
        streams: vec![loki_wire::Stream {
            labels: r#"{job="replayed-vector", source_type="file"}"#.into(),
            entries: (0..2).map(|n| loki_entry(&format!("vector line {n}"), now)).collect(),
        }],
    };
    let vector_bulk = (0..2)
        .map(|n| {
            format!(
                "{}\n{}\n",
                // `bulk.index = "replayed-vector-es"`: documents without a service field take it.
                json!({"index": {"_index": "replayed-vector-es"}}),
                json!({"host": "node-7", "message": format!("vector doc {n}"), "source_type": "file",
                       "timestamp": stamp("%Y-%m-%dT%H:%M:%S%.6fZ"), "file": "/var/log/app.log"})
            )
        })
        .collect::<String>();
    let fluent_bit_bulk = (0..2)
        .map(|n| {
            format!(
                "{}\n{}\n",
                json!({"create": {"_index": "replayed-fluent-bit"}}),
                json!({"@timestamp": stamp("%Y-%m-%dT%H:%M:%S%.3fZ"), "log": format!("fluent bit {n}"), "stream": "stdout"})
            )
        })
        .collect::<String>();
    let fluent_bit_loki = json!({"streams": [{"stream": {"job": "replayed-fluent-bit-loki"},
        "values": [[ns, json!({"log": "fluent bit to loki", "stream": "stderr"}).to_string()]]}]});
    let vector_agent = "Vector/0.43.1 (x86_64-unknown-linux-gnu e30bf1f 2024-12-10 16:14:47.175528383)";
    vec![
        Replayed {
            shipper: "OpenTelemetry Collector otlphttp exporter",
            path: "/v1/logs".into(),
            headers: vec![
                ("content-type", "application/x-protobuf".into()),
                ("content-encoding", "gzip".into()),
                ("user-agent", "OpenTelemetry Collector Contrib/0.115.1 (linux/amd64)".into()),
            ],
            body: gzip(&collector.encode_to_vec()),
            status: StatusCode::OK,
            service: "replayed-collector",
            events: 3,
        },
        Replayed {
            shipper: "Vector elasticsearch sink (bulk mode, gzip)",
            path: "/es/_bulk?timeout=60s".into(),
            headers: vec![
                ("content-type", "application/x-ndjson".into()),
                ("content-encoding", "gzip".into()),
                ("accept-encoding", "zstd,gzip,deflate,br".into()),
                ("user-agent", vector_agent.into()),
            ],
            body: gzip(vector_bulk.as_bytes()),
            status: StatusCode::OK,
            service: "replayed-vector-es",
            events: 2,
        },
        Replayed {
            shipper: "Vector loki sink",
            path: "/loki/api/v1/push".into(),
            headers: vec![("content-type", "application/x-protobuf".into()), ("user-agent", vector_agent.into())],
            body: snap::raw::Encoder::new().compress_vec(&vector_loki.encode_to_vec()).unwrap(),
            status: StatusCode::NO_CONTENT,
            service: "replayed-vector",
            events: 2,
        },
        Replayed {
            shipper: "Fluent Bit es output (Suppress_Type_Name on)",
            path: "/es/_bulk".into(),
            headers: vec![("content-type", "application/x-ndjson".into()), ("user-agent", "Fluent-Bit".into())],
            body: fluent_bit_bulk.into_bytes(),
            status: StatusCode::OK,
            service: "replayed-fluent-bit",
            events: 2,
        },
        Replayed {
            shipper: "Fluent Bit loki output (line_format json)",
            path: "/loki/api/v1/push".into(),
            headers: vec![("content-type", "application/json".into()), ("user-agent", "Fluent-Bit".into())],
            body: fluent_bit_loki.to_string().into_bytes(),
            status: StatusCode::NO_CONTENT,
            service: "replayed-fluent-bit-loki",
            events: 1,
        },
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_replayed_as_the_collector_vector_and_fluent_bit_send_them_are_stored() {
    let app = TestApp::spawn().await;
    for replayed in replayed_requests() {
        let mut request = app.client.post(format!("{}{}", app.address, replayed.path)).body(replayed.body);
        for (name, value) in &replayed.headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        assert_eq!(status, replayed.status, "{}: {}", replayed.shipper, response.text().await.unwrap());
        if replayed.path.starts_with("/es/") {
            let reply: Value = response.json().await.unwrap();
            assert_eq!(reply["errors"], false, "{}: {reply}", replayed.shipper);
        }
        assert_eq!(
            wait_for(&app.database, replayed.service, replayed.events).await,
            replayed.events,
            "{}",
            replayed.shipper
        );
    }
    let vector = stored(&app.database, "replayed-vector-es").await;
    assert_eq!(vector[0]["metadata"]["source_type"], "file");
    let fluent = stored(&app.database, "replayed-fluent-bit-loki").await;
    assert_eq!(fluent[0]["message"], r#"{"log":"fluent bit to loki","stream":"stderr"}"#);
}

/// Posts OTLP batches of `size` records with unique messages until `stop`; returns the
/// messages of the batches acknowledged in full.
async fn otlp_load(client: reqwest::Client, address: String, size: usize, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut acknowledged = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let batch = uuid::Uuid::now_v7().simple().to_string();
        let messages: Vec<String> = (0..size).map(|n| format!("{batch}-{n}")).collect();
        let export =
            export("otlp-killed", messages.iter().map(|message| record(message, chrono::Utc::now())).collect());
        let request = client
            .post(format!("{address}/v1/logs"))
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(CONTENT_ENCODING, "gzip")
            .body(gzip(&export.encode_to_vec()));
        let Ok(response) = request.send().await else { break };
        if response.status() != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let Ok(body) = response.bytes().await else { break };
        let reply = ExportLogsServiceResponse::decode(body).unwrap();
        assert!(reply.partial_success.is_none(), "{reply:?}");
        acknowledged.extend(messages);
    }
    acknowledged
}

async fn stored_messages(database: &TestDatabase, service: &str) -> Vec<String> {
    stored(database, service).await.into_iter().map(|event| event["message"].as_str().unwrap().to_owned()).collect()
}

/// The journal's rare paths under OTLP load: segments of 4 KiB roll inside group commits,
/// and the writers hold events long enough that only the journal has them at the kill.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_otlp_load_loses_no_acknowledged_record() {
    let database = TestDatabase::create().await;
    let journal = tempfile::tempdir().unwrap();
    let settings = [
        ("AURORE__JOURNAL__SEGMENT_BYTES", "4096"),
        ("AURORE__WRITER__LINGER_MS", "300"),
        ("AURORE__WRITER__BATCH_SIZE", "100000"),
    ];
    let mut acknowledged = std::collections::HashSet::new();
    for _ in 0..3 {
        let service = Service::start(&database.url, journal.path(), &settings);
        service.wait_until_ready().await;
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..4)
            .map(|_| tokio::spawn(otlp_load(service.client.clone(), service.address.clone(), 25, stop.clone())))
            .collect();
        // Acknowledged records pile up, then the kill lands with requests in flight.
        let first = poll(Duration::from_secs(10), || async { count(&database, "otlp-killed").await }, |n| *n > 0).await;
        assert!(first > 0, "some records were stored before the kill");
        tokio::time::sleep(Duration::from_millis(150)).await;
        service.kill().await;
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            acknowledged.extend(client.await.unwrap());
        }
    }
    let service = Service::start(&database.url, journal.path(), &[]);
    service.wait_until_ready().await;
    let missing = || async {
        let stored: std::collections::HashSet<String> =
            stored_messages(&database, "otlp-killed").await.into_iter().collect();
        acknowledged.iter().filter(|message| !stored.contains(*message)).count()
    };
    let missing = poll(STORED_WITHIN, missing, |missing| *missing == 0).await;
    assert_eq!(missing, 0, "{missing} of {} acknowledged records lost", acknowledged.len());
    let messages = stored_messages(&database, "otlp-killed").await;
    let distinct: std::collections::HashSet<&String> = messages.iter().collect();
    assert_eq!(distinct.len(), messages.len(), "no record is stored twice");
    println!("OTLP kill -9: acknowledged {}, stored {}, lost 0, duplicated 0", acknowledged.len(), messages.len());
    assert!(service.terminate().await.success());
}

/// A free loopback port, for a server that takes its port from its configuration.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// rsyslog's omelasticsearch, configured as the README shows, fed syslog lines over TCP.
#[tokio::test(flavor = "multi_thread")]
async fn rsyslog_omelasticsearch_ships_syslog_lines_in_bulk_with_basic_credentials() {
    let app =
        TestApp::spawn_with(|settings| settings.auth.api_keys = aurore_http::KeyDigests::of(["rsyslog-key"])).await;
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        r#"global(workDirectory="{work}")
module(load="imtcp")
input(type="imtcp" port="{port}" address="127.0.0.1")
module(load="omelasticsearch")
template(name="aurore" type="list" option.json="on") {{
  constant(value="{{\"@timestamp\":\"") property(name="timereported" dateFormat="rfc3339")
  constant(value="\",\"service.name\":\"") property(name="programname")
  constant(value="\",\"message\":\"") property(name="msg")
  constant(value="\",\"host\":\"") property(name="hostname") constant(value="\"}}")
}}
action(type="omelasticsearch" server="{address}/es" searchIndex="syslog"
       template="aurore" bulkmode="on" uid="rsyslog" pwd="rsyslog-key"
       esVersion.major="8" rebindinterval="-1")
"#,
        work = work.path().display(),
        address = app.address,
    );
    let path = work.path().join("rsyslog.conf");
    std::fs::write(&path, config).unwrap();
    let rsyslogd =
        ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"].into_iter().find(|path| std::path::Path::new(path).exists());
    let rsyslogd =
        rsyslogd.expect("rsyslogd with omelasticsearch: apt-get install rsyslog-elasticsearch (.ci/run does)");
    let _rsyslog = tokio::process::Command::new(rsyslogd)
        .arg("-n")
        .arg("-f")
        .arg(&path)
        .arg("-i")
        .arg(work.path().join("rsyslog.pid"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", port));
    let mut stream = poll(Duration::from_secs(10), connect, Result::is_ok).await.expect("rsyslog listens");
    let now = support::iso(chrono::Utc::now());
    let lines: String = (0..100).map(|n| format!("<14>1 {now} web-7 checkout 42 - - order {n} \"placed\"\n")).collect();
    tokio::io::AsyncWriteExt::write_all(&mut stream, lines.as_bytes()).await.unwrap();
    drop(stream);
    assert_eq!(wait_for(&app.database, "checkout", 100).await, 100);
    let events = stored(&app.database, "checkout").await;
    let first = events.iter().find(|event| event["message"] == "order 7 \"placed\"").unwrap();
    assert_eq!(first["metadata"], json!({"host": "web-7", "_index": "syslog"}));
}

/// Bodies within the size limit that decode into millions of tiny records or attributes:
/// each protocol bounds what a body decodes into before decoding it, and holds that from
/// the budget all bodies share, so 4 of each at once stay within the bound the
/// `POST /events` bombs are held to. Each is refused whole (`413`), or turned away while
/// the others hold the budget (`503`).
#[tokio::test(flavor = "multi_thread")]
async fn record_bombs_on_every_protocol_keep_peak_memory_within_the_bound() {
    const PEAK_RSS_MIB: u64 = 256;
    let database = TestDatabase::create().await;
    let journal = tempfile::tempdir().unwrap();
    // A debug build on two cores takes a while to inflate 20 bodies at once.
    let service = Service::start(&database.url, journal.path(), &[("AURORE__SERVER__BODY_TIMEOUT_SECS", "120")]);
    service.wait_until_ready().await;
    let idle = service.peak_rss_kib();
    // Under the 8 MiB limit once decompressed, each record or entry a few bytes.
    let empty_records = {
        let scope = ScopeLogs { log_records: vec![LogRecord::default(); 2_500_000], ..ScopeLogs::default() };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs { scope_logs: vec![scope], ..ResourceLogs::default() }],
        }
    };
    // One record, but millions of empty attributes in it.
    let empty_attributes = export(
        "bomb",
        vec![LogRecord { attributes: vec![KeyValue::default(); 2_500_000], ..record("m", chrono::Utc::now()) }],
    );
    let empty_entries = loki_wire::PushRequest {
        streams: vec![loki_wire::Stream {
            labels: "{app=\"bomb\"}".into(),
            entries: vec![loki_wire::Entry::default(); 2_500_000],
        }],
    };
    let json_records =
        format!(r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{}{{}}]}}]}}]}}"#, "{},".repeat(2_500_000));
    let json_entries = format!(r#"{{"streams":[{{"stream":{{}},"values":[{}[]]}}]}}"#, "[],".repeat(2_500_000));
    let bulk = "{\"index\":{}}\n{}\n".repeat(500_000);
    let bombs: Vec<(&str, &str, Option<&str>, Vec<u8>)> = vec![
        ("/v1/logs", "application/x-protobuf", Some("gzip"), gzip(&empty_records.encode_to_vec())),
        ("/v1/logs", "application/x-protobuf", Some("gzip"), gzip(&empty_attributes.encode_to_vec())),
        ("/v1/logs", "application/json", Some("gzip"), gzip(json_records.as_bytes())),
        (
            "/loki/api/v1/push",
            "application/x-protobuf",
            None,
            snap::raw::Encoder::new().compress_vec(&empty_entries.encode_to_vec()).unwrap(),
        ),
        ("/loki/api/v1/push", "application/json", Some("gzip"), gzip(json_entries.as_bytes())),
        ("/es/_bulk", "application/x-ndjson", Some("gzip"), gzip(bulk.as_bytes())),
    ];
    let mut sent = Vec::new();
    for (path, content_type, encoding, body) in bombs {
        for _ in 0..4 {
            let mut request = service
                .client
                .post(format!("{}{path}", service.address))
                .header(CONTENT_TYPE, content_type)
                .body(body.clone());
            if let Some(encoding) = encoding {
                request = request.header(CONTENT_ENCODING, encoding);
            }
            sent.push(tokio::spawn(async move { (path, content_type, request.send().await.unwrap().status()) }));
        }
    }
    for bomb in sent {
        let (path, content_type, status) = bomb.await.unwrap();
        assert!(
            matches!(status, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::SERVICE_UNAVAILABLE),
            "{path} {content_type}: {status}"
        );
    }
    let peak = service.peak_rss_kib();
    println!("peak RSS under record bombs: idle {} MiB, after 24 bombs {} MiB", idle / 1024, peak / 1024);
    assert!(peak / 1024 <= PEAK_RSS_MIB, "peak RSS {} MiB over {PEAK_RSS_MIB} MiB", peak / 1024);
    assert_eq!(count(&database, "bomb").await, 0);
    assert!(service.terminate().await.success());
}

/// Timestamps from a broken clock, in each protocol's own spelling: the far future, the
/// largest integer the wire can hold, a day ahead. Each such record is refused on its own,
/// naming the bound; the others of its request are kept.
#[tokio::test(flavor = "multi_thread")]
async fn far_future_timestamps_are_refused_record_by_record_on_every_protocol() {
    let app = TestApp::spawn().await;
    let now = chrono::Utc::now();
    let tomorrow = now + chrono::Duration::days(1);
    let records = vec![
        LogRecord { time_unix_nano: u64::MAX, ..record("u64 max", now) },
        record("tomorrow", tomorrow),
        record("otlp now", now),
    ];
    let response = post_otlp(&app, &export("broken-clock", records)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let partial = ExportLogsServiceResponse::decode(response.bytes().await.unwrap()).unwrap().partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 2, "{}", partial.error_message);
    assert!(partial.error_message.contains("max_future"), "{}", partial.error_message);

    let bulk = [
        json!({"index": {}}),
        json!({"@timestamp": "9999-12-31T23:59:59Z", "service.name": "broken-clock", "message": "year 9999"}),
        json!({"index": {}}),
        json!({"@timestamp": i64::MAX, "service.name": "broken-clock", "message": "i64 max millis"}),
        json!({"index": {}}),
        json!({"@timestamp": support::iso(now), "service.name": "broken-clock", "message": "es now"}),
    ]
    .iter()
    .map(|line| format!("{line}\n"))
    .collect::<String>();
    let reply = post_bulk(&app, "/es/_bulk", &bulk).await;
    let statuses: Vec<u64> =
        reply["items"].as_array().unwrap().iter().map(|item| item["index"]["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [400, 400, 201], "{reply}");

    let ns = |at: chrono::DateTime<chrono::Utc>| at.timestamp_nanos_opt().unwrap().to_string();
    let push = json!({"streams": [{"stream": {"app": "broken-clock"}, "values": [
        ["99999999999999999999", "past i64"], [ns(tomorrow), "loki tomorrow"], [ns(now), "loki now"]]}]});
    let response = app.client.post(format!("{}/loki/api/v1/push", app.address)).json(&push).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().starts_with("2 of 3 entries refused"));

    assert_eq!(wait_for(&app.database, "broken-clock", 3).await, 3);
    let messages = stored_messages(&app.database, "broken-clock").await;
    assert_eq!(messages, ["es now", "loki now", "otlp now"]);
}
