//! Sending the load and summarising it.

use crate::verify::Verification;
use crate::{Mode, RunArgs, events};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Bodies pre-built per task, so the generator spends little CPU per request.
/// Distinct bodies each sending task cycles through: enough that the service sees varied
/// events, few enough that making them stays quick for large batches.
fn bodies_per_task(args: &RunArgs) -> usize {
    (64_000 / args.batch.max(1)).clamp(4, 256)
}

/// What the run produced.
#[derive(Debug)]
pub struct Outcome {
    pub started: chrono::DateTime<chrono::Utc>,
    pub elapsed: Duration,
    pub requests: u64,
    pub accepted_events: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    /// Microseconds per request.
    pub latency: Histogram<u64>,
    /// Ids the service acknowledged (kept only with `--verify`).
    pub acknowledged: Vec<String>,
}

/// Live counters, shared by the tasks and the progress bar.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    accepted_events: AtomicU64,
    refused: AtomicU64,
    transport_errors: AtomicU64,
    /// Events handed out to tasks, for `--events`.
    budget_used: AtomicU64,
    /// Requests scheduled, for `--rate`.
    scheduled: AtomicU64,
}

/// One task's share of the outcome.
struct TaskOutcome {
    statuses: BTreeMap<u16, u64>,
    latency: Histogram<u64>,
    acknowledged: Vec<String>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min, three significant digits: bounds that cannot fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant bounds are valid")
}

/// A request body and its content type.
type Body = (Vec<u8>, &'static str);

fn body(args: &RunArgs, run_id: &str) -> Body {
    let event = || events::event(run_id, args.services, args.metadata_bytes, args.personal_data);
    match args.mode {
        Mode::Single => (event().to_string().into_bytes(), "application/json"),
        Mode::Array => (
            serde_json::Value::Array((0..args.batch).map(|_| event()).collect()).to_string().into_bytes(),
            "application/json",
        ),
        Mode::Ndjson => {
            let lines: Vec<String> = (0..args.batch).map(|_| event().to_string()).collect();
            (lines.join("\n").into_bytes(), "application/x-ndjson")
        }
        Mode::Otlp => (events::otlp_export((0..args.batch).map(|_| event()).collect()), "application/x-protobuf"),
    }
}

/// Where a mode's requests go, and the status that acknowledges them.
fn endpoint(mode: Mode) -> (&'static str, u16) {
    match mode {
        Mode::Otlp => ("/v1/logs", 200),
        Mode::Single | Mode::Array | Mode::Ndjson => ("/events", 202),
    }
}

pub async fn drive(args: &RunArgs, run_id: &str) -> anyhow::Result<Outcome> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()?;
    let events_per_request = if args.mode == Mode::Single { 1 } else { args.batch.max(1) as u64 };
    let counters = Arc::new(Counters::default());
    // Bodies are made before the clock starts: their making is not the service's time.
    let bodies: Vec<Arc<Vec<Body>>> = (0..args.concurrency.max(1))
        .map(|_| Arc::new((0..bodies_per_task(args)).map(|_| body(args, run_id)).collect()))
        .collect();
    let started = chrono::Utc::now();
    let start = Instant::now();
    let deadline = start + args.duration;
    let interval = (args.rate > 0).then(|| Duration::from_secs_f64(events_per_request as f64 / args.rate as f64));

    let progress = (!args.quiet).then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    });
    let ticker = progress.clone().map(|bar| {
        let counters = counters.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let accepted = counters.accepted_events.load(Ordering::Relaxed);
                let rate = accepted as f64 / start.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "accepted {accepted} events ({rate:.0}/s), refused requests {}, errors {}",
                    counters.refused.load(Ordering::Relaxed),
                    counters.transport_errors.load(Ordering::Relaxed)
                ));
                bar.tick();
            }
        })
    });

    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|bodies| {
            let (path, acknowledged_status) = endpoint(args.mode);
            let (client, counters, url) = (client.clone(), counters.clone(), format!("{}{path}", args.url));
            let (limit, verify) = (args.events, args.verify);
            tokio::spawn(async move {
                let mut outcome =
                    TaskOutcome { statuses: BTreeMap::new(), latency: histogram(), acknowledged: Vec::new() };
                for (content, content_type) in bodies.iter().cycle() {
                    if Instant::now() >= deadline {
                        break;
                    }
                    if let Some(limit) = limit
                        && counters.budget_used.fetch_add(events_per_request, Ordering::Relaxed) >= limit
                    {
                        break;
                    }
                    if let Some(interval) = interval {
                        let slot = counters.scheduled.fetch_add(1, Ordering::Relaxed);
                        let due = start + interval.mul_f64(slot as f64);
                        if due >= deadline {
                            break;
                        }
                        tokio::time::sleep_until(due).await;
                    }
                    let sent = Instant::now();
                    let response =
                        client.post(&url).header("content-type", *content_type).body(content.clone()).send().await;
                    counters.requests.fetch_add(1, Ordering::Relaxed);
                    let response = match response {
                        Ok(response) => response,
                        Err(_) => {
                            counters.transport_errors.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    let status = response.status().as_u16();
                    *outcome.statuses.entry(status).or_default() += 1;
                    if status != acknowledged_status {
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                        let _ = response.bytes().await;
                        continue;
                    }
                    let receipt = if verify {
                        response.json::<serde_json::Value>().await.ok()
                    } else {
                        let _ = response.bytes().await;
                        None
                    };
                    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let _ = outcome.latency.record(micros.max(1));
                    counters.accepted_events.fetch_add(events_per_request, Ordering::Relaxed);
                    if let Some(receipt) = receipt {
                        acknowledged_ids(&receipt, &mut outcome.acknowledged);
                    }
                }
                outcome
            })
        })
        .collect();

    let mut statuses = BTreeMap::new();
    let mut latency = histogram();
    let mut acknowledged = Vec::new();
    for task in tasks {
        let task = task.await?;
        for (status, count) in task.statuses {
            *statuses.entry(status).or_default() += count;
        }
        let _ = latency.add(&task.latency);
        acknowledged.extend(task.acknowledged);
    }
    let elapsed = start.elapsed();
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(Outcome {
        started,
        elapsed,
        requests: counters.requests.load(Ordering::Relaxed),
        accepted_events: counters.accepted_events.load(Ordering::Relaxed),
        statuses,
        transport_errors: counters.transport_errors.load(Ordering::Relaxed),
        latency,
        acknowledged,
    })
}

fn acknowledged_ids(receipt: &serde_json::Value, into: &mut Vec<String>) {
    if let Some(id) = receipt["event_id"].as_str() {
        into.push(id.to_owned());
    }
    if let Some(ids) = receipt["event_ids"].as_array() {
        into.extend(ids.iter().filter_map(|id| id.as_str().map(str::to_owned)));
    }
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub run_id: String,
    pub mode: String,
    pub concurrency: usize,
    pub seconds: f64,
    pub requests: u64,
    pub accepted_events: u64,
    pub accepted_events_per_second: f64,
    pub statuses: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    pub latency: Latency,
    pub verification: Option<Verification>,
}

impl Report {
    pub fn new(args: &RunArgs, run_id: &str, outcome: &Outcome, verification: Option<Verification>) -> Self {
        let ms = |quantile: f64| outcome.latency.value_at_quantile(quantile) as f64 / 1000.0;
        let seconds = outcome.elapsed.as_secs_f64();
        Self {
            run_id: run_id.to_owned(),
            mode: format!("{:?}", args.mode).to_lowercase(),
            concurrency: args.concurrency,
            seconds,
            requests: outcome.requests,
            accepted_events: outcome.accepted_events,
            accepted_events_per_second: outcome.accepted_events as f64 / seconds,
            statuses: outcome.statuses.clone(),
            transport_errors: outcome.transport_errors,
            latency: Latency {
                p50_ms: ms(0.5),
                p90_ms: ms(0.9),
                p99_ms: ms(0.99),
                max_ms: outcome.latency.max() as f64 / 1000.0,
            },
            verification,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "run {} · {} · concurrency {} · {:.1} s", self.run_id, self.mode, self.concurrency, self.seconds)?;
        writeln!(f, "accepted  {} events, {:.0} events/s", self.accepted_events, self.accepted_events_per_second)?;
        let statuses: Vec<String> = self.statuses.iter().map(|(status, count)| format!("{status}: {count}")).collect();
        writeln!(
            f,
            "requests  {} ({}), transport errors {}",
            self.requests,
            statuses.join(", "),
            self.transport_errors
        )?;
        writeln!(
            f,
            "latency   p50 {:.2} ms · p90 {:.2} ms · p99 {:.2} ms · max {:.2} ms",
            self.latency.p50_ms, self.latency.p90_ms, self.latency.p99_ms, self.latency.max_ms
        )?;
        if let Some(verification) = &self.verification {
            writeln!(
                f,
                "verified  acknowledged {} · stored {} · lost {} · duplicated {}",
                verification.acknowledged, verification.stored, verification.lost, verification.duplicated
            )?;
        }
        Ok(())
    }
}
