//! Group commit without a writer thread. The first append to arrive while no group is
//! being written becomes the leader: it frames every append queued behind it, writes them
//! with one fdatasync on its own thread, answers them, and hands leadership to the first
//! append that queued meanwhile. Followers only wait; no request hops to another thread
//! and back to be written.
//!
//! Segments are preallocated when they are opened, so an fdatasync after a write does not
//! also have to journal a new file size; the unwritten tail reads as zeros, which
//! recovery tells apart from a torn record.

use crate::record::{self, HEADER_BYTES};
use crate::{Segment, Shared, io_error, segment_path, sync_dir};
use aurore_domain::{Appended, JournalError, JournalSeq, RecordRef};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tokio::sync::{Notify, oneshot};

pub(crate) struct Append {
    events_json: Vec<u8>,
    count: u32,
    reply: oneshot::Sender<Signal>,
}

/// What a queued append is told.
enum Signal {
    Done(Result<Appended, JournalError>),
    /// Its caller is to write the next group; `Done` will come on the new receiver.
    Lead(Leadership, oneshot::Receiver<Signal>),
}

/// Appends waiting to be written, and whether a leader is writing.
#[derive(Default)]
struct Queue {
    pending: VecDeque<Append>,
    bytes: usize,
    leading: bool,
    closed: bool,
}

/// The journal's write side: the queue appends join and the state only a leader touches.
pub(crate) struct Committer {
    shared: Arc<Shared>,
    queue: Mutex<Queue>,
    writer: Mutex<Writer>,
    /// Wakes a leader waiting out the group-commit wait once the queue fills a group.
    group_full: Notify,
    /// Wakes `close` when a leader steps down.
    idle: Notify,
}

/// The right to write the next group. Whoever holds it must write, so a holder that is
/// dropped unused (its caller's future was cancelled) writes the group on the way out:
/// appends queued behind a leader are never stranded.
struct Leadership {
    committer: Arc<Committer>,
    armed: bool,
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if std::mem::take(&mut self.armed) {
            self.committer.write_groups();
        }
    }
}

impl Leadership {
    async fn lead(mut self) {
        let committer = self.committer.clone();
        let settings = &committer.shared.settings;
        if !settings.group_commit_wait.is_zero() {
            let full = committer.group_full.notified();
            tokio::pin!(full);
            full.as_mut().enable();
            if committer.queue().bytes < settings.group_commit_bytes {
                tokio::select! {
                    () = tokio::time::sleep(settings.group_commit_wait) => {}
                    () = full => {}
                }
            }
        }
        self.armed = false;
        committer.write_groups();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves its state consistent, so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queue = self.queue();
        f.debug_struct("Committer").field("queued", &queue.pending.len()).field("leading", &queue.leading).finish()
    }
}

impl Committer {
    pub(crate) fn new(shared: Arc<Shared>, next_seq: u64) -> Self {
        Self {
            writer: Mutex::new(Writer { shared: shared.clone(), next_seq, open: None }),
            shared,
            queue: Mutex::default(),
            group_full: Notify::new(),
            idle: Notify::new(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    /// Queues one record and waits until it is durable, writing groups itself when it is
    /// the leader.
    pub(crate) async fn append(self: &Arc<Self>, events_json: Vec<u8>, count: u32) -> Result<Appended, JournalError> {
        let (reply, mut outcome) = oneshot::channel();
        let mut leadership = {
            let mut queue = self.queue();
            if queue.closed {
                return Err(JournalError::Io("the journal is closed".into()));
            }
            queue.bytes += events_json.len();
            let full = queue.bytes >= self.shared.settings.group_commit_bytes;
            queue.pending.push_back(Append { events_json, count, reply });
            if queue.leading {
                if full {
                    self.group_full.notify_waiters();
                }
                None
            } else {
                queue.leading = true;
                Some(Leadership { committer: self.clone(), armed: true })
            }
        };
        loop {
            if let Some(leader) = leadership.take() {
                leader.lead().await;
            }
            match outcome.await {
                Ok(Signal::Done(result)) => return result,
                Ok(Signal::Lead(next, next_outcome)) => {
                    leadership = Some(next);
                    outcome = next_outcome;
                }
                Err(_) => return Err(JournalError::Io("the journal writer has stopped".into())),
            }
        }
    }

    /// Writes the group at the head of the queue, then passes leadership to the append
    /// queued first behind it, or steps down when none is waiting.
    fn write_groups(self: &Arc<Self>) {
        loop {
            let group = {
                let mut queue = self.queue();
                let mut bytes = 0;
                let mut group = Vec::new();
                while bytes < self.shared.settings.group_commit_bytes
                    && let Some(append) = queue.pending.pop_front()
                {
                    bytes += append.events_json.len();
                    group.push(append);
                }
                queue.bytes -= bytes;
                group
            };
            lock(&self.writer).commit(group);
            let mut queue = self.queue();
            let Some(next) = queue.pending.front_mut() else {
                queue.leading = false;
                drop(queue);
                self.idle.notify_waiters();
                return;
            };
            let (reply, outcome) = oneshot::channel();
            let waiting = std::mem::replace(&mut next.reply, reply);
            drop(queue);
            let leadership = Leadership { committer: self.clone(), armed: true };
            match waiting.send(Signal::Lead(leadership, outcome)) {
                Ok(()) => return,
                // That caller is gone: keep leading.
                Err(signal) => {
                    if let Signal::Lead(mut unused, _) = signal {
                        unused.armed = false;
                    }
                }
            }
        }
    }

    /// Stops taking appends, lets the group being written finish, then seals the open
    /// segment (deleting it if everything in it is acknowledged).
    pub(crate) async fn close(&self) {
        self.queue().closed = true;
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if !self.queue().leading {
                break;
            }
            idle.await;
        }
        lock(&self.writer).seal();
    }
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
        let _ = request.reply.send(Signal::Done(Err(error.clone())));
    }
}

/// Remembers whether the disk took the last write, for readiness.
fn note_outcome(shared: &Shared, written: bool) {
    *lock(&shared.last_failure) = (!written).then(Instant::now);
}

/// The segment being appended to.
struct Open {
    key: u64,
    file: File,
    /// Bytes of records written; past them the file holds preallocated zeros.
    bytes: u64,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    next_seq: u64,
    open: Option<Open>,
}

impl Writer {
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
                let _ = request.reply.send(Signal::Done(Err(JournalError::Full { limit_bytes: limit })));
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
            let error = JournalError::Io("no open segment to write to".into());
            refuse(chunk.answers.into_iter().map(|(request, _)| request), &error);
            return Err(error);
        };
        let path = segment_path(&self.shared.settings.dir, open.key);
        let written = open
            .file
            .write_all_at(&chunk.framed, open.bytes)
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
            let _ = request.reply.send(Signal::Done(Ok(appended)));
        }
        Ok(())
    }

    /// Seals the open segment, giving back its unwritten preallocation, and deletes it if
    /// already fully acknowledged.
    fn seal(&mut self) {
        if let Some(open) = self.open.take() {
            // Not synced: a preallocated tail that survives a crash reads as zeros, which
            // recovery cuts without calling it damage.
            if let Err(error) = open.file.set_len(open.bytes) {
                tracing::warn!(segment = open.key, %error, "cannot trim a sealed journal segment");
            }
            let mut table = self.shared.table();
            if let Some(segment) = table.segments.get_mut(&open.key) {
                segment.sealed = true;
            }
            table.reclaim(open.key);
        }
    }

    /// Seals the open segment and starts a new one named after the next position,
    /// preallocated up to the segment size (never past the journal's limit).
    fn roll(&mut self) -> Result<(), JournalError> {
        let dir = self.shared.settings.dir.clone();
        self.seal();
        let key = self.next_seq;
        let path = segment_path(&dir, key);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("cannot create", &path, e))?;
        let room = self.shared.settings.max_bytes.saturating_sub(self.shared.table().total_bytes);
        let preallocate = self.shared.settings.segment_bytes.min(room);
        if preallocate > 0
            && let Err(error) = rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, preallocate)
        {
            // Only slower without it: writes then extend the file.
            tracing::debug!(path = %path.display(), %error, "cannot preallocate a journal segment");
        }
        if let Err(error) = file.sync_all().and_then(|()| sync_dir(&dir)) {
            // Nothing refers to it yet: leave nothing behind.
            let _ = std::fs::remove_file(&path);
            return Err(io_error("cannot sync", &dir, error));
        }
        self.shared.table().segments.insert(key, Segment { path, bytes: 0, unacknowledged: 0, sealed: false });
        self.open = Some(Open { key, file, bytes: 0 });
        Ok(())
    }
}
