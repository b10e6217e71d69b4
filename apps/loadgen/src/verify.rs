//! Checking, through the query API, that every acknowledged event is stored exactly once.

use crate::drive::Outcome;
use crate::{RunArgs, events};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct Verification {
    pub acknowledged: usize,
    /// Rows of this run found, acknowledged or not (a request cut off after journaling may
    /// be stored without its acknowledgement having arrived).
    pub stored: usize,
    pub lost: usize,
    pub duplicated: usize,
}

/// Waits until the service has stored as many events of the run as were acknowledged (or
/// the count stops growing, or `--verify-timeout` passes), then walks every service of the
/// run with `next_cursor` once and counts what is missing and what appears twice.
pub async fn verify(args: &RunArgs, run_id: &str, outcome: &Outcome) -> anyhow::Result<Verification> {
    let client = reqwest::Client::new();
    let from = (outcome.started - chrono::Duration::minutes(5)).to_rfc3339();
    let to = (chrono::Utc::now() + chrono::Duration::minutes(5)).to_rfc3339();
    let services: Vec<String> = (0..args.services.max(1)).map(|index| events::service(run_id, index)).collect();
    let acknowledged: HashSet<&str> = outcome.acknowledged.iter().map(String::as_str).collect();

    let deadline = tokio::time::Instant::now() + args.verify_timeout;
    let mut last = (0, tokio::time::Instant::now());
    loop {
        let mut stored = 0;
        for service in &services {
            let query =
                [("service", service.as_str()), ("from", from.as_str()), ("to", to.as_str()), ("pageSize", "1")];
            stored += page(&client, &args.url, &query).await?["total"].as_u64().unwrap_or(0);
        }
        let now = tokio::time::Instant::now();
        if stored != last.0 {
            last = (stored, now);
        }
        let stalled = now.duration_since(last.1) >= Duration::from_secs(5);
        if stored as usize >= acknowledged.len() || stalled || now >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut seen: HashMap<String, usize> = HashMap::new();
    for service in &services {
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![
                ("service", service.as_str()),
                ("from", from.as_str()),
                ("to", to.as_str()),
                ("pageSize", "1000"),
                ("sortOrder", "ASC"),
            ];
            if let Some(cursor) = &cursor {
                query.push(("cursor", cursor));
            }
            let page = page(&client, &args.url, &query).await?;
            for event in page["events"].as_array().into_iter().flatten() {
                if let Some(id) = event["eventId"].as_str() {
                    *seen.entry(id.to_owned()).or_default() += 1;
                }
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
    }
    let lost = acknowledged.iter().filter(|id| !seen.contains_key(**id)).count();
    let duplicated = seen.values().map(|count| count - 1).sum();
    Ok(Verification { acknowledged: acknowledged.len(), stored: seen.len(), lost, duplicated })
}

async fn page(client: &reqwest::Client, url: &str, query: &[(&str, &str)]) -> anyhow::Result<serde_json::Value> {
    Ok(client.get(format!("{url}/events")).query(query).send().await?.error_for_status()?.json().await?)
}
