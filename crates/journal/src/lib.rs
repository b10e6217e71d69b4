//! The write-ahead journal behind the domain's [`Journal`] port.
//!
//! Events are appended to segment files under one directory by a single writer thread.
//! Appends that arrive together share one `fdatasync` (group commit); each caller's future
//! resolves only once its record is on stable storage. Every record is length-prefixed and
//! CRC32C-checksummed (see `record.rs`). A segment is deleted whole once it is sealed and
//! every event in it has been acknowledged as stored. At start-up each segment is scanned:
//! a torn or corrupt tail is cut at the last good record (reported, never fatal), and the
//! surviving events are handed back for replay.

mod record;
mod writer;

use async_trait::async_trait;
use aurore_domain::{Appended, Event, Journal, JournalError, JournalSeq, JournalUsage, RecordRef};
use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Where the journal lives and how it batches and bounds itself.
#[derive(Debug, Clone)]
pub struct JournalSettings {
    pub dir: PathBuf,
    /// Past this many bytes on disk, appends are refused with [`JournalError::Full`].
    pub max_bytes: u64,
    /// A segment is sealed and a new one started once it would exceed this size.
    pub segment_bytes: u64,
    /// How long the writer waits for more appends to share an fsync with.
    pub group_commit_wait: Duration,
    /// A group is written as soon as it holds this many bytes.
    pub group_commit_bytes: usize,
}

/// What start-up found on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    /// Events journaled but not acknowledged: they will be replayed.
    pub events: u64,
    /// Segments whose tail was torn or corrupt and was cut.
    pub damaged_segments: usize,
    pub truncated_bytes: u64,
}

/// Bookkeeping for one segment file.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    bytes: u64,
    /// Events in it not yet acknowledged.
    unacknowledged: u64,
    /// No more appends go to it; it is deleted once `unacknowledged` reaches zero.
    sealed: bool,
}

/// Segments by the position of their first event; shared by the writer and acknowledgers.
#[derive(Debug, Default)]
struct Table {
    segments: BTreeMap<u64, Segment>,
    total_bytes: u64,
}

impl Table {
    /// Deletes `key` if it is sealed and fully acknowledged.
    fn reclaim(&mut self, key: u64) {
        let done = self.segments.get(&key).is_some_and(|segment| segment.sealed && segment.unacknowledged == 0);
        if done && let Some(segment) = self.segments.remove(&key) {
            self.total_bytes -= segment.bytes;
            if let Err(error) = fs::remove_file(&segment.path) {
                tracing::warn!(path = %segment.path.display(), %error, "cannot delete a stored journal segment");
            }
        }
    }
}

#[derive(Debug)]
struct Shared {
    table: Mutex<Table>,
    settings: JournalSettings,
    fsyncs: AtomicU64,
    /// When a write last failed, if none has succeeded since.
    last_failure: Mutex<Option<Instant>>,
}

/// How long a failed write marks the journal as failing. Past it, the journal is offered
/// traffic again: nothing else would tell it that the disk has recovered.
const FAILURE_MEMORY: Duration = Duration::from_secs(5);

impl Shared {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // Updates keep the table consistent at every step, so a poisoned lock is usable.
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The journal on local disk.
#[derive(Debug)]
pub struct FileJournal {
    requests: mpsc::Sender<writer::Request>,
    shared: Arc<Shared>,
    /// Segments found at start-up, still to be handed out for replay.
    to_replay: Mutex<VecDeque<PathBuf>>,
}

fn io_error(context: &str, path: &Path, error: io::Error) -> JournalError {
    JournalError::io(format!("{context} {}: {error}", path.display()), Some(Arc::new(error)))
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

/// Reads the one record at `offset`, checking its checksum.
fn read_record(path: &Path, offset: u64) -> Result<Vec<(JournalSeq, Event)>, JournalError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = fs::File::open(path).map_err(|e| io_error("cannot open", path, e))?;
    file.seek(SeekFrom::Start(offset)).map_err(|e| io_error("cannot seek in", path, e))?;
    let mut header = [0; record::HEADER_BYTES];
    file.read_exact(&mut header).map_err(|e| io_error("cannot read", path, e))?;
    let payload_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if payload_len > record::MAX_PAYLOAD_BYTES {
        return Err(JournalError::io(format!("no record at {offset} in {}", path.display()), None));
    }
    let mut bytes = header.to_vec();
    bytes.resize(record::HEADER_BYTES + payload_len, 0);
    file.read_exact(&mut bytes[record::HEADER_BYTES..]).map_err(|e| io_error("cannot read", path, e))?;
    let scan = record::scan(&bytes);
    let record = scan
        .records
        .first()
        .ok_or_else(|| JournalError::io(format!("corrupt record at {offset} in {}", path.display()), None))?;
    record::decode_events(record)
        .map_err(|e| JournalError::io(format!("undecodable record in {}: {e}", path.display()), Some(Arc::new(e))))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl FileJournal {
    /// Opens (or creates) the journal in `settings.dir`, repairing torn tails, and starts
    /// its writer thread.
    pub fn open(settings: JournalSettings) -> Result<(Self, RecoveryReport), JournalError> {
        let dir = settings.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| io_error("cannot create", &dir, e))?;
        let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|e| io_error("cannot list", &dir, e))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
            .collect();
        paths.sort();

        let mut report = RecoveryReport::default();
        let mut table = Table::default();
        let mut to_replay = VecDeque::new();
        let mut next_seq = 0;
        for path in paths {
            let bytes = fs::read(&path).map_err(|e| io_error("cannot read", &path, e))?;
            let scan = record::scan(&bytes);
            if scan.good_len < bytes.len() {
                let cut = (bytes.len() - scan.good_len) as u64;
                tracing::warn!(path = %path.display(), kept = scan.good_len, cut, "journal segment has a torn or corrupt tail; cut at the last good record");
                report.damaged_segments += 1;
                report.truncated_bytes += cut;
                let file =
                    fs::OpenOptions::new().write(true).open(&path).map_err(|e| io_error("cannot open", &path, e))?;
                file.set_len(scan.good_len as u64).map_err(|e| io_error("cannot truncate", &path, e))?;
                file.sync_all().map_err(|e| io_error("cannot sync", &path, e))?;
            }
            let events: u64 = scan.records.iter().map(|record| u64::from(record.count)).sum();
            let (Some(first), Some(last)) = (scan.records.first(), scan.records.last()) else {
                fs::remove_file(&path).map_err(|e| io_error("cannot delete", &path, e))?;
                continue;
            };
            next_seq = next_seq.max(last.first.0 + u64::from(last.count));
            report.segments += 1;
            report.events += events;
            table.total_bytes += scan.good_len as u64;
            table.segments.insert(
                first.first.0,
                Segment { path: path.clone(), bytes: scan.good_len as u64, unacknowledged: events, sealed: true },
            );
            to_replay.push_back(path);
        }
        sync_dir(&dir).map_err(|e| io_error("cannot sync", &dir, e))?;

        let shared = Arc::new(Shared {
            table: Mutex::new(table),
            settings,
            fsyncs: AtomicU64::new(0),
            last_failure: Mutex::new(None),
        });
        let requests = writer::start(shared.clone(), next_seq)?;
        Ok((Self { requests, shared, to_replay: Mutex::new(to_replay) }, report))
    }

    /// Stops taking appends and deletes every segment whose events are all acknowledged,
    /// so a clean stop leaves only what still needs replaying.
    pub async fn close(&self) {
        let (reply, closed) = tokio::sync::oneshot::channel();
        if self.requests.send(writer::Request::Close(reply)).is_ok() {
            let _ = closed.await;
        }
    }

    /// fsyncs done since start: appends per fsync shows how well group commit works.
    pub fn fsyncs(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Journal for FileJournal {
    async fn append(&self, events: &[Event]) -> Result<Appended, JournalError> {
        let count = u32::try_from(events.len()).map_err(|_| JournalError::io("too many events in one append", None))?;
        let events_json = record::encode_events(events);
        let (reply, outcome) = tokio::sync::oneshot::channel();
        self.requests
            .send(writer::Request::Append(writer::Append { events_json, count, reply }))
            .map_err(|_| JournalError::io("the journal is closed", None))?;
        outcome.await.map_err(|_| JournalError::io("the journal writer has stopped", None))?
    }

    async fn read(&self, record: RecordRef) -> Result<Vec<(JournalSeq, Event)>, JournalError> {
        let path = segment_path(&self.shared.settings.dir, record.segment);
        tokio::task::spawn_blocking(move || read_record(&path, record.offset))
            .await
            .map_err(|error| JournalError::io(format!("journal read task failed: {error}"), Some(Arc::new(error))))?
    }

    fn acknowledge(&self, seqs: &[JournalSeq]) {
        let mut table = self.shared.table();
        let mut touched = Vec::new();
        for seq in seqs {
            if let Some((key, segment)) = table.segments.range_mut(..=seq.0).next_back() {
                segment.unacknowledged = segment.unacknowledged.saturating_sub(1);
                if touched.last() != Some(key) {
                    touched.push(*key);
                }
            }
        }
        for key in touched {
            table.reclaim(key);
        }
    }

    fn next_unacknowledged(&self) -> Result<Option<Vec<(JournalSeq, Event)>>, JournalError> {
        let Some(path) = self.to_replay.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front() else {
            return Ok(None);
        };
        let bytes = fs::read(&path).map_err(|e| io_error("cannot read", &path, e))?;
        let mut events = Vec::new();
        for record in record::scan(&bytes).records {
            match record::decode_events(&record) {
                Ok(decoded) => events.extend(decoded),
                Err(error) => {
                    tracing::error!(path = %path.display(), first = record.first.0, %error, "a checksummed journal record does not decode; skipped");
                    self.acknowledge(
                        &(0..u64::from(record.count)).map(|i| JournalSeq(record.first.0 + i)).collect::<Vec<_>>(),
                    );
                }
            }
        }
        Ok(Some(events))
    }

    fn usage(&self) -> JournalUsage {
        let table = self.shared.table();
        let last_failure = *self.shared.last_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        JournalUsage {
            bytes: table.total_bytes,
            capacity_bytes: self.shared.settings.max_bytes,
            segments: table.segments.len(),
            write_failing: last_failure.is_some_and(|at| at.elapsed() < FAILURE_MEMORY),
        }
    }
}
