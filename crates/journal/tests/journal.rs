//! The journal on real files: round trips, reclaiming space, group commit, damaged
//! segments, the size limit, and a model-based test of crashes and restarts.

#![allow(clippy::unwrap_used)]

use aurore_domain::{Appended, Event, EventDraft, EventId, Journal, JournalError, JournalSeq};
use aurore_journal::{FileJournal, JournalSettings, RecoveryReport};
use chrono::Utc;
use proptest::prelude::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn settings(dir: &Path) -> JournalSettings {
    JournalSettings {
        dir: dir.to_owned(),
        max_bytes: 64 * 1024 * 1024,
        segment_bytes: 4096,
        group_commit_wait: Duration::from_millis(2),
        group_commit_bytes: 1024 * 1024,
    }
}

fn events(count: usize, tag: &str) -> Vec<Event> {
    (0..count)
        .map(|i| {
            EventDraft {
                timestamp: Utc::now(),
                service: "journal".into(),
                message: format!("{tag} {i} é \u{0}"),
                metadata: Some(json!({"i": i, "nested": {"ok": true}})),
                idempotency_key: None,
            }
            .enrich(EventId::generate(), Utc::now())
        })
        .collect()
}

fn open(dir: &Path) -> (FileJournal, RecoveryReport) {
    FileJournal::open(settings(dir)).unwrap()
}

fn replay_all(journal: &FileJournal) -> Vec<(JournalSeq, Event)> {
    let mut all = Vec::new();
    while let Some(batch) = journal.next_unacknowledged().unwrap() {
        all.extend(batch);
    }
    all
}

/// `count` appends of one event each, running concurrently.
fn spawn_appends(
    journal: &Arc<FileJournal>,
    count: usize,
    tag: &str,
) -> Vec<tokio::task::JoinHandle<Result<Appended, JournalError>>> {
    (0..count)
        .map(|i| {
            let journal = journal.clone();
            let batch = events(1, &format!("{tag} {i}"));
            tokio::spawn(async move { journal.append(&batch).await })
        })
        .collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    files
}

#[tokio::test]
async fn appended_events_come_back_intact_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = events(3, "a");
    let second = events(2, "b");
    {
        let (journal, report) = open(dir.path());
        assert_eq!(report, RecoveryReport::default());
        assert_eq!(journal.append(&first).await.unwrap().first, JournalSeq(0));
        let appended = journal.append(&second).await.unwrap();
        assert_eq!(appended.first, JournalSeq(3));
        let read_back: Vec<Event> = journal.read(appended.record).await.unwrap().into_iter().map(|(_, e)| e).collect();
        assert_eq!(read_back, second, "an append reads back from where it was put");
    }
    let (journal, report) = open(dir.path());
    assert_eq!(report.events, 5);
    let replayed = replay_all(&journal);
    let expected: Vec<(JournalSeq, Event)> =
        first.into_iter().chain(second).enumerate().map(|(i, event)| (JournalSeq(i as u64), event)).collect();
    assert_eq!(replayed, expected);
    assert_eq!(
        journal.append(&events(1, "c")).await.unwrap().first,
        JournalSeq(5),
        "positions continue after a restart"
    );
}

#[tokio::test]
async fn fully_acknowledged_segments_are_deleted_and_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path());
    let mut seqs = Vec::new();
    for round in 0..20 {
        let first = journal.append(&events(5, &format!("round {round}"))).await.unwrap().first;
        seqs.extend((0..5).map(|i| JournalSeq(first.0 + i)));
    }
    let segments_before = journal.usage().segments;
    assert!(segments_before > 3, "small segments roll over: {segments_before}");
    let bytes_before = journal.usage().bytes;
    journal.acknowledge(&seqs[..80]);
    assert!(journal.usage().segments < segments_before);
    assert!(journal.usage().bytes < bytes_before);
    assert_eq!(segment_files(dir.path()).len(), journal.usage().segments);
    drop(journal);

    let (journal, report) = open(dir.path());
    let replayed: BTreeSet<u64> = replay_all(&journal).into_iter().map(|(seq, _)| seq.0).collect();
    assert!((80..100).all(|seq| replayed.contains(&seq)), "every unacknowledged event is replayed");
    assert!(replayed.len() < 100, "acknowledged segments are gone");
    assert_eq!(report.events as usize, replayed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) =
        FileJournal::open(JournalSettings { segment_bytes: 64 * 1024 * 1024, ..settings(dir.path()) }).unwrap();
    let journal = Arc::new(journal);
    let mut seqs = BTreeSet::new();
    for append in spawn_appends(&journal, 200, "") {
        seqs.insert(append.await.unwrap().unwrap().first.0);
    }
    assert_eq!(seqs, (0..200).collect(), "every append got its own position");
    assert!(journal.fsyncs() < 100, "200 appends took {} fsyncs", journal.fsyncs());
}

#[tokio::test]
async fn closing_deletes_what_is_fully_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path());
    let first = journal.append(&events(3, "done")).await.unwrap().first;
    journal.acknowledge(&(0..3).map(|i| JournalSeq(first.0 + i)).collect::<Vec<_>>());
    assert_eq!(segment_files(dir.path()).len(), 1, "the open segment stays while appends may come");
    journal.close().await;
    assert!(segment_files(dir.path()).is_empty());
    assert!(journal.append(&events(1, "late")).await.is_err(), "a closed journal takes no appends");
}

#[tokio::test]
async fn a_torn_tail_is_cut_at_the_last_good_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (journal, _) =
            FileJournal::open(JournalSettings { segment_bytes: 1 << 20, ..settings(dir.path()) }).unwrap();
        for tag in ["a", "b", "c"] {
            journal.append(&events(2, tag)).await.unwrap();
        }
    }
    let segment = segment_files(dir.path()).pop().unwrap();
    let length = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(length - 10).unwrap();

    let (journal, report) = open(dir.path());
    assert_eq!(report.damaged_segments, 1);
    assert!(report.truncated_bytes > 0);
    assert_eq!(report.events, 4);
    let messages: Vec<String> = replay_all(&journal).into_iter().map(|(_, event)| event.message).collect();
    assert!(messages[0].starts_with("a 0") && messages[3].starts_with("b 1"), "{messages:?}");
    drop(journal);
    let (_, report) = open(dir.path());
    assert_eq!(report.damaged_segments, 0, "the cut is permanent: the next start finds a clean segment");
}

#[tokio::test]
async fn a_flipped_byte_is_detected_and_the_records_before_it_survive() {
    let dir = tempfile::tempdir().unwrap();
    let first_record_len;
    {
        let (journal, _) =
            FileJournal::open(JournalSettings { segment_bytes: 1 << 20, ..settings(dir.path()) }).unwrap();
        journal.append(&events(2, "a")).await.unwrap();
        first_record_len = journal.usage().bytes;
        journal.append(&events(2, "b")).await.unwrap();
        journal.append(&events(2, "c")).await.unwrap();
    }
    let segment = segment_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let inside_second = usize::try_from(first_record_len).unwrap() + 30;
    bytes[inside_second] ^= 0x40;
    std::fs::write(&segment, bytes).unwrap();

    let (journal, report) = open(dir.path());
    assert_eq!((report.damaged_segments, report.events), (1, 2));
    let replayed = replay_all(&journal);
    assert_eq!(replayed.len(), 2);
    assert!(replayed.iter().all(|(_, event)| event.message.starts_with('a')));
}

#[tokio::test]
async fn a_full_journal_refuses_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = FileJournal::open(JournalSettings { max_bytes: 2000, ..settings(dir.path()) }).unwrap();
    journal.append(&events(2, "fits")).await.unwrap();
    let bytes = journal.usage().bytes;
    let error = journal.append(&events(20, "too much")).await.unwrap_err();
    assert_eq!(error, JournalError::Full { limit_bytes: 2000 });
    assert_eq!(journal.usage().bytes, bytes);
    drop(journal);
    let (_, report) = open(dir.path());
    assert_eq!(report.events, 2);
}

/// Events whose messages are `len` characters long, so records vary in size.
fn sized_events(count: usize, len: usize) -> Vec<Event> {
    let mut batch = events(count, "model");
    for event in &mut batch {
        event.message.push_str(&"x".repeat(len));
    }
    batch
}

/// The journal's bookkeeping matches the files: what it counts is what is on disk.
fn assert_accounting_matches_disk(journal: &FileJournal, dir: &Path) -> Result<(), TestCaseError> {
    let files = segment_files(dir);
    let on_disk: u64 = files.iter().map(|file| std::fs::metadata(file).unwrap().len()).sum();
    let usage = journal.usage();
    prop_assert_eq!(usage.bytes, on_disk, "journal bytes counted vs on disk");
    prop_assert_eq!(usage.segments, files.len(), "segments counted vs files");
    Ok(())
}

/// One step of the model-based test.
#[derive(Debug, Clone)]
enum Op {
    /// Appends sent at once so they share a group commit: (events, extra message length)
    /// each. With segments of 2 KiB most groups roll the segment at least once.
    Group(Vec<(usize, usize)>),
    /// Acknowledge the pending event at this index (modulo the number pending).
    Acknowledge(usize),
    /// Acknowledge every pending event of one record at once, as a stored batch does.
    AcknowledgeRecord(usize),
    /// Read back a record appended since the last restart, as a spilled event is.
    Read(usize),
    /// Drop the journal without warning and open it again.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (1usize..6, 0usize..300).prop_map(|append| Op::Group(vec![append])),
        3 => proptest::collection::vec((1usize..6, 0usize..700), 2..12).prop_map(Op::Group),
        3 => any::<usize>().prop_map(Op::Acknowledge),
        2 => any::<usize>().prop_map(Op::AcknowledgeRecord),
        1 => any::<usize>().prop_map(Op::Read),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Against a model of "appended and not yet acknowledged": after any sequence of
    /// group commits that roll segments in their middle, acknowledgements in any order,
    /// reads and restarts, a restart replays every pending event with its content, never
    /// an event that was not appended, and never one twice; and at every step the bytes
    /// the journal counts are the bytes on disk.
    #[test]
    fn restarts_never_lose_or_invent_events(ops in proptest::collection::vec(op(), 1..50)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let small = |dir: &Path| JournalSettings {
            segment_bytes: 2048,
            group_commit_wait: Duration::from_millis(5),
            ..settings(dir)
        };
        let (mut journal, _) = FileJournal::open(small(dir.path())).unwrap();
        let mut appended: BTreeMap<u64, Event> = BTreeMap::new();
        let mut pending: Vec<u64> = Vec::new();
        // Records appended since the last restart: where they are and what they hold.
        let mut records: Vec<(aurore_domain::RecordRef, Vec<(u64, Event)>)> = Vec::new();
        for op in ops {
            match op {
                Op::Group(appends) => {
                    let batches: Vec<Vec<Event>> = appends.iter().map(|&(count, len)| sized_events(count, len)).collect();
                    let results = runtime.block_on(futures_util::future::join_all(batches.iter().map(|batch| journal.append(batch))));
                    for (batch, result) in batches.into_iter().zip(results) {
                        let result = result.unwrap();
                        let mut record = Vec::new();
                        for (offset, event) in batch.into_iter().enumerate() {
                            let seq = result.first.0 + offset as u64;
                            prop_assert!(appended.insert(seq, event.clone()).is_none(), "position {} of a live event handed out twice", seq);
                            pending.push(seq);
                            record.push((seq, event));
                        }
                        records.push((result.record, record));
                    }
                }
                Op::Acknowledge(index) if !pending.is_empty() => {
                    let seq = pending.swap_remove(index % pending.len());
                    journal.acknowledge(&[JournalSeq(seq)]);
                }
                Op::AcknowledgeRecord(index) if !records.is_empty() => {
                    let (_, record) = &records[index % records.len()];
                    let seqs: Vec<JournalSeq> = record.iter().map(|(seq, _)| *seq).filter(|seq| pending.contains(seq)).map(JournalSeq).collect();
                    pending.retain(|seq| !seqs.contains(&JournalSeq(*seq)));
                    journal.acknowledge(&seqs);
                }
                Op::Read(index) if !records.is_empty() => {
                    let (reference, record) = &records[index % records.len()];
                    // Only a record with an event still pending is guaranteed to be there.
                    if record.iter().any(|(seq, _)| pending.contains(seq)) {
                        let read_back = runtime.block_on(journal.read(*reference)).unwrap();
                        let read_back: Vec<(u64, Event)> = read_back.into_iter().map(|(seq, event)| (seq.0, event)).collect();
                        prop_assert_eq!(&read_back, record);
                    }
                }
                Op::Acknowledge(_) | Op::AcknowledgeRecord(_) | Op::Read(_) => {}
                Op::Restart => {
                    drop(journal);
                    let (reopened, report) = FileJournal::open(small(dir.path())).unwrap();
                    journal = reopened;
                    prop_assert_eq!(report.damaged_segments, 0);
                    let replayed = replay_all(&journal);
                    let replayed_seqs: BTreeSet<u64> = replayed.iter().map(|(seq, _)| seq.0).collect();
                    prop_assert_eq!(replayed_seqs.len(), replayed.len(), "an event replayed twice");
                    for seq in &pending {
                        prop_assert!(replayed_seqs.contains(seq), "pending event {} lost", seq);
                    }
                    for (seq, event) in &replayed {
                        prop_assert_eq!(appended.get(&seq.0), Some(event), "replayed something never appended");
                    }
                    // What comes back is pending again, as it would be in the service; the
                    // positions of what is gone may be handed out anew.
                    appended.retain(|seq, _| replayed_seqs.contains(seq));
                    pending = replayed_seqs.into_iter().collect();
                    records.clear();
                }
            }
            assert_accounting_matches_disk(&journal, dir.path())?;
        }
    }
}

#[tokio::test]
async fn a_failed_write_leaves_no_segment_and_no_gap_in_positions_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = open(dir.path());
    // The segment the first append opens is a device that is always full.
    let first_segment = dir.path().join(format!("{:020}.seg", 0));
    for _ in 0..20 {
        std::os::unix::fs::symlink("/dev/full", &first_segment).unwrap();
        let error = journal.append(&events(3, "no room")).await.unwrap_err();
        assert!(matches!(error, JournalError::Io { .. }), "{error:?}");
        assert!(segment_files(dir.path()).is_empty(), "a refused write leaves no segment behind");
        assert_eq!(journal.usage().bytes, 0);
        assert!(journal.usage().write_failing, "readiness learns the disk is failing");
    }
    // Space is back: nothing of the failures remains, and positions continue without a gap.
    let appended = journal.append(&events(2, "room again")).await.unwrap();
    assert_eq!(appended.first, JournalSeq(0));
    assert!(!journal.usage().write_failing, "a write that succeeds clears it");
    assert_eq!(segment_files(dir.path()).len(), 1);
    let on_disk = std::fs::metadata(&segment_files(dir.path())[0]).unwrap().len();
    assert_eq!(journal.usage().bytes, on_disk);
    drop(journal);
    let (journal, report) = open(dir.path());
    assert_eq!((report.events, report.damaged_segments), (2, 0));
    assert_eq!(replay_all(&journal).len(), 2);
}

/// Appends whose callers give up at any point (a client that disconnects) never strand the
/// appends that share their group.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_abandoned_at_any_point_never_strand_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(
        FileJournal::open(JournalSettings { group_commit_wait: Duration::from_millis(1), ..settings(dir.path()) })
            .unwrap()
            .0,
    );
    for round in 0..20 {
        let mut kept = Vec::new();
        for (i, task) in spawn_appends(&journal, 40, &round.to_string()).into_iter().enumerate() {
            if (i + round) % 3 == 0 {
                task.abort();
            } else {
                kept.push(task);
            }
        }
        for task in kept {
            let appended = tokio::time::timeout(Duration::from_secs(10), task).await;
            assert!(matches!(appended, Ok(Ok(Ok(_)))), "round {round}: an append was stranded: {appended:?}");
        }
    }
    let close = tokio::time::timeout(Duration::from_secs(10), journal.close()).await;
    assert!(close.is_ok(), "close waits for the last group, then returns");
}

/// Closing while appends are being written: each is either durable (and replayed after a
/// restart) or refused, never left waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closing_under_load_answers_every_append() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(open(dir.path()).0);
    let tasks = spawn_appends(&journal, 200, "");
    journal.close().await;
    let mut durable = 0;
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap() {
            Ok(_) => durable += 1,
            Err(error) => assert!(matches!(error, JournalError::Io { .. }), "{error:?}"),
        }
    }
    drop(journal);
    let (journal, report) = open(dir.path());
    assert_eq!(report.events, durable);
    assert_eq!(replay_all(&journal).len() as u64, durable);
}
