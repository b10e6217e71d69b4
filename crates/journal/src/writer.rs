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
    std::thread::Builder::new()
        .name("aurore-journal".into())
        .spawn(move || writer.run(&requests))
        .map_err(|error| JournalError::Io(format!("cannot start the journal writer: {error}")))?;
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

    fn commit(&mut self, group: Vec<Append>) {
        let mut accepted: Vec<(Append, Appended)> = Vec::with_capacity(group.len());
        let mut buffer = Vec::new();
        let mut pending_in_open = 0u64;
        let mut counts_per_segment: Vec<(u64, u64, u64)> = Vec::new(); // (segment key, events, bytes)
        let mut failure = None;
        for request in group {
            let length = (HEADER_BYTES + 12 + request.events_json.len()) as u64;
            let limit = self.shared.settings.max_bytes;
            let written: u64 = counts_per_segment.iter().map(|(_, _, bytes)| bytes).sum::<u64>();
            if self.shared.table().total_bytes + written + length > limit {
                let _ = request.reply.send(Err(JournalError::Full { limit_bytes: limit }));
                continue;
            }
            let open_bytes = self.open.as_ref().map_or(0, |open| open.bytes) + pending_in_open;
            if self.open.is_none() || (open_bytes > 0 && open_bytes + length > self.shared.settings.segment_bytes) {
                if let Err(error) = self.flush(&mut buffer).and_then(|()| self.roll()) {
                    failure = Some(error);
                    let nowhere =
                        Appended { first: JournalSeq(self.next_seq), record: RecordRef { segment: 0, offset: 0 } };
                    accepted.push((request, nowhere));
                    break;
                }
                pending_in_open = 0;
            }
            let first = JournalSeq(self.next_seq);
            let (key, flushed) = self.open.as_ref().map_or((0, 0), |open| (open.key, open.bytes));
            let record = RecordRef { segment: key, offset: flushed + buffer.len() as u64 };
            record::frame(&mut buffer, first, request.count, &request.events_json);
            self.next_seq += u64::from(request.count);
            pending_in_open += length;
            match counts_per_segment.last_mut() {
                Some((last_key, events, bytes)) if *last_key == key => {
                    *events += u64::from(request.count);
                    *bytes += length;
                }
                _ => counts_per_segment.push((key, u64::from(request.count), length)),
            }
            accepted.push((request, Appended { first, record }));
        }
        let outcome = match failure {
            Some(error) => Err(error),
            None => self.flush(&mut buffer),
        };
        match outcome {
            Ok(()) => {
                let mut table = self.shared.table();
                for (key, events, bytes) in counts_per_segment {
                    if let Some(segment) = table.segments.get_mut(&key) {
                        segment.unacknowledged += events;
                        segment.bytes += bytes;
                    }
                    table.total_bytes += bytes;
                }
                drop(table);
                for (request, appended) in accepted {
                    let _ = request.reply.send(Ok(appended));
                }
            }
            Err(error) => {
                tracing::error!(%error, "journal write failed; the group is refused");
                for (request, _) in accepted {
                    let _ = request.reply.send(Err(error.clone()));
                }
                // The open segment may end in a partial record: start a fresh one next time.
                self.open = None;
            }
        }
    }

    /// Writes and fdatasyncs what the group has framed for the open segment.
    fn flush(&mut self, buffer: &mut Vec<u8>) -> Result<(), JournalError> {
        if buffer.is_empty() {
            return Ok(());
        }
        let Some(open) = self.open.as_mut() else { return Ok(()) };
        let path = segment_path(&self.shared.settings.dir, open.key);
        open.file.write_all(buffer).map_err(|e| io_error("cannot write", &path, e))?;
        open.file.sync_data().map_err(|e| io_error("cannot sync", &path, e))?;
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        open.bytes += buffer.len() as u64;
        buffer.clear();
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
        sync_dir(&dir).map_err(|e| io_error("cannot sync", &dir, e))?;
        self.shared.table().segments.insert(key, Segment { path, bytes: 0, unacknowledged: 0, sealed: false });
        self.open = Some(Open { key, file, bytes: 0 });
        Ok(())
    }
}
