//! The single writer thread: frames appends, writes them in groups, one fdatasync per
//! group, rolls segments, and answers each caller once its record is durable.

use crate::record::{self, HEADER_BYTES};
use crate::{Segment, Shared, io_error, segment_path, sync_dir};
use aurore_domain::{Appended, JournalError, JournalSeq, RecordRef};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::Instant;

pub(crate) enum Request {
    Append(Append),
    /// Seal the open segment, delete what is fully acknowledged, and stop.
    Close(tokio::sync::oneshot::Sender<()>),
}

pub(crate) struct Append {
    pub(crate) events_json: Vec<u8>,
    pub(crate) count: u32,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<Appended, JournalError>>,
}

/// Appends framed for the open segment and not yet durable.
#[derive(Default)]
struct Chunk {
    framed: Vec<u8>,
    events: u64,
    /// The position of its first event.
    first: Option<u64>,
    answers: Vec<(Append, Appended)>,
}

impl Chunk {
    fn bytes(&self) -> u64 {
        self.framed.len() as u64
    }
}

fn refuse(requests: impl Iterator<Item = Append>, error: &JournalError) {
    for request in requests {
        let _ = request.reply.send(Err(error.clone()));
    }
}

/// Remembers whether the disk took the last write, for readiness.
fn note_outcome(shared: &Shared, written: bool) {
    *shared.last_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = (!written).then(Instant::now);
}

/// The segment being appended to.
struct Open {
    key: u64,
    file: File,
    bytes: u64,
}

struct Writer {
    shared: Arc<Shared>,
    next_seq: u64,
    open: Option<Open>,
}

pub(crate) fn start(shared: Arc<Shared>, next_seq: u64) -> Result<mpsc::Sender<Request>, JournalError> {
    let (sender, requests) = mpsc::channel();
    let mut writer = Writer { shared, next_seq, open: None };
    std::thread::Builder::new().name("aurore-journal".into()).spawn(move || writer.run(&requests)).map_err(
        |error| JournalError::io(format!("cannot start the journal writer: {error}"), Some(Arc::new(error))),
    )?;
    Ok(sender)
}

impl Writer {
    /// Serves until closed or until every sender is gone.
    fn run(&mut self, requests: &mpsc::Receiver<Request>) {
        while let Ok(request) = requests.recv() {
            let Request::Append(first) = request else { return self.close(request) };
            let (group, close) = self.gather(first, requests);
            self.commit(group);
            if let Some(close) = close {
                return self.close(close);
            }
        }
    }

    fn close(&mut self, request: Request) {
        self.seal();
        if let Request::Close(reply) = request {
            let _ = reply.send(());
        }
    }

    /// Collects what is waiting, and what arrives within the group-commit wait. A close
    /// request ends the group and is returned to be served after it.
    fn gather(&self, first: Append, requests: &mpsc::Receiver<Request>) -> (Vec<Append>, Option<Request>) {
        let settings = &self.shared.settings;
        let deadline = Instant::now() + settings.group_commit_wait;
        let mut bytes = first.events_json.len();
        let mut group = vec![first];
        while bytes < settings.group_commit_bytes {
            let next = match requests.try_recv() {
                Ok(request) => request,
                Err(_) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match requests.recv_timeout(left) {
                        Ok(request) => request,
                        Err(_) => break,
                    }
                }
            };
            match next {
                Request::Append(append) => {
                    bytes += append.events_json.len();
                    group.push(append);
                }
                close @ Request::Close(_) => return (group, Some(close)),
            }
        }
        (group, None)
    }

    /// Writes a group. Requests are framed into a chunk for the open segment; a chunk is
    /// made durable, counted in the table and answered before its segment may be sealed,
    /// so a roll inside a group can never reclaim records it just wrote.
    fn commit(&mut self, group: Vec<Append>) {
        let mut chunk = Chunk::default();
        let mut requests = group.into_iter();
        while let Some(request) = requests.next() {
            let length = (HEADER_BYTES + 12 + request.events_json.len()) as u64;
            let limit = self.shared.settings.max_bytes;
            if self.shared.table().total_bytes + chunk.bytes() + length > limit {
                let _ = request.reply.send(Err(JournalError::Full { limit_bytes: limit }));
                continue;
            }
            let open_bytes = self.open.as_ref().map_or(0, |open| open.bytes) + chunk.bytes();
            let full = open_bytes > 0 && open_bytes + length > self.shared.settings.segment_bytes;
            if (self.open.is_none() || full)
                && let Err(error) = self.make_durable(&mut chunk).and_then(|()| self.roll())
            {
                note_outcome(&self.shared, false);
                refuse(std::iter::once(request).chain(requests), &error);
                return;
            }
            let first = JournalSeq(self.next_seq);
            let (key, flushed) = self.open.as_ref().map_or((0, 0), |open| (open.key, open.bytes));
            let record = RecordRef { segment: key, offset: flushed + chunk.bytes() };
            record::frame(&mut chunk.framed, first, request.count, &request.events_json);
            self.next_seq += u64::from(request.count);
            chunk.events += u64::from(request.count);
            chunk.first.get_or_insert(first.0);
            chunk.answers.push((request, Appended { first, record }));
        }
        // A failure has already been answered to the chunk's requests.
        let _ = self.make_durable(&mut chunk);
    }

    /// Makes `chunk` durable in the open segment, counts it in the table, then answers its
    /// requests. On failure the segment is cut back to its last durable byte, so a failed
    /// write leaves neither a partial record nor a gap in positions behind.
    fn make_durable(&mut self, chunk: &mut Chunk) -> Result<(), JournalError> {
        if chunk.framed.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(chunk);
        let Some(open) = self.open.as_mut() else {
            let error = JournalError::io("no open segment to write to", None);
            refuse(chunk.answers.into_iter().map(|(request, _)| request), &error);
            return Err(error);
        };
        let path = segment_path(&self.shared.settings.dir, open.key);
        let written = open
            .file
            .write_all(&chunk.framed)
            .map_err(|e| io_error("cannot write", &path, e))
            .and_then(|()| open.file.sync_data().map_err(|e| io_error("cannot sync", &path, e)));
        note_outcome(&self.shared, written.is_ok());
        if let Err(error) = written {
            tracing::error!(%error, "journal write failed; the appends are refused");
            let key = open.key;
            let restored = open.file.set_len(open.bytes).and_then(|()| open.file.sync_data()).is_ok();
            if !restored {
                // The file's end is unknown: start a fresh segment next time; recovery cuts
                // whatever partial record this one ends in.
                self.seal();
            }
            // The positions may be handed out again unless a record holding them may
            // survive in a segment that stays (acknowledgements find segments by position).
            if restored || !self.shared.table().segments.contains_key(&key) {
                self.next_seq = chunk.first.unwrap_or(self.next_seq);
            }
            refuse(chunk.answers.into_iter().map(|(request, _)| request), &error);
            return Err(error);
        }
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        open.bytes += chunk.bytes();
        {
            let mut table = self.shared.table();
            if let Some(segment) = table.segments.get_mut(&open.key) {
                segment.unacknowledged += chunk.events;
                segment.bytes += chunk.bytes();
            }
            table.total_bytes += chunk.bytes();
        }
        for (request, appended) in chunk.answers {
            let _ = request.reply.send(Ok(appended));
        }
        Ok(())
    }

    /// Seals the open segment, deleting it if already fully acknowledged.
    fn seal(&mut self) {
        if let Some(open) = self.open.take() {
            let mut table = self.shared.table();
            if let Some(segment) = table.segments.get_mut(&open.key) {
                segment.sealed = true;
            }
            table.reclaim(open.key);
        }
    }

    /// Seals the open segment and starts a new one named after the next position.
    fn roll(&mut self) -> Result<(), JournalError> {
        let dir = self.shared.settings.dir.clone();
        self.seal();
        let key = self.next_seq;
        let path = segment_path(&dir, key);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error("cannot create", &path, e))?;
        if let Err(error) = sync_dir(&dir) {
            // Nothing refers to it yet: leave nothing behind.
            let _ = std::fs::remove_file(&path);
            return Err(io_error("cannot sync", &dir, error));
        }
        self.shared.table().segments.insert(key, Segment { path, bytes: 0, unacknowledged: 0, sealed: false });
        self.open = Some(Open { key, file, bytes: 0 });
        Ok(())
    }
}
