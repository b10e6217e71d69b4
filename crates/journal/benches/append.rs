//! Journal appends on a real file, fsync included: one event, and 100 at once.

use aurore_domain::{Event, EventDraft, EventId, Journal};
use aurore_journal::{FileJournal, JournalSettings};
use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;

fn events(count: usize) -> Vec<Event> {
    (0..count)
        .map(|i| {
            EventDraft {
                timestamp: Utc::now(),
                service: "bench".into(),
                message: format!("checkout session completed for request {i:08x}"),
                metadata: Some(serde_json::json!({"user_id": format!("usr_{i:06}"), "ip_address": "10.1.2.3"})),
                idempotency_key: None,
            }
            .enrich(EventId::generate(), Utc::now())
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (journal, _) = FileJournal::open(JournalSettings {
        dir: dir.path().to_owned(),
        max_bytes: 1 << 40,
        segment_bytes: 64 << 20,
        group_commit_wait: Duration::ZERO,
        group_commit_bytes: 4 << 20,
    })
    .expect("open journal");
    let mut group = c.benchmark_group("journal");
    for size in [1, 100] {
        let batch = events(size);
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(format!("append_fsync/{size}"), |b| {
            b.iter(|| {
                let appended = runtime.block_on(journal.append(&batch)).expect("append");
                let seqs: Vec<_> = (0..size as u64).map(|i| aurore_domain::JournalSeq(appended.first.0 + i)).collect();
                journal.acknowledge(&seqs);
            })
        });
    }
    group.finish();
}

criterion_group!(append, benches);
criterion_main!(append);
