//! The on-disk format. A segment is a sequence of records:
//!
//! ```text
//! [payload length: u32 LE][CRC32C of payload: u32 LE][payload]
//! payload = [first seq: u64 LE][event count: u32 LE][events as a JSON array]
//! ```
//!
//! A record is whole or it is not there: a short read or a checksum mismatch ends the
//! readable part of a segment.

use aurore_domain::{Event, JournalSeq};

pub(crate) const HEADER_BYTES: usize = 8;
const PAYLOAD_PREFIX_BYTES: usize = 12;
/// No honest record is larger; a bigger length is corruption.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 256 * 1024 * 1024;

/// The events of one append, encoded by the caller so the writer thread only frames them.
pub(crate) fn encode_events(events: &[Event]) -> Vec<u8> {
    // Serialising plain strings, numbers and JSON values cannot fail.
    serde_json::to_vec(events).unwrap_or_default()
}

/// Appends a framed record to `out`; returns its length on disk.
pub(crate) fn frame(out: &mut Vec<u8>, first: JournalSeq, count: u32, events_json: &[u8]) -> usize {
    let payload_len = PAYLOAD_PREFIX_BYTES + events_json.len();
    let mut crc = crc32c::crc32c(&first.0.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &count.to_le_bytes());
    crc = crc32c::crc32c_append(crc, events_json);
    out.reserve(HEADER_BYTES + payload_len);
    out.extend_from_slice(&u32::try_from(payload_len).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&first.0.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(events_json);
    HEADER_BYTES + payload_len
}

/// One record read back.
pub(crate) struct Record<'a> {
    pub(crate) first: JournalSeq,
    pub(crate) count: u32,
    pub(crate) events_json: &'a [u8],
}

/// What a scan of a segment found.
pub(crate) struct Scan<'a> {
    pub(crate) records: Vec<Record<'a>>,
    /// Bytes that form whole, intact records; anything after is torn or corrupt.
    pub(crate) good_len: usize,
}

pub(crate) fn scan(bytes: &[u8]) -> Scan<'_> {
    let mut records = Vec::new();
    let mut offset = 0;
    while let Some(header) = bytes.get(offset..offset + HEADER_BYTES) {
        let payload_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if !(PAYLOAD_PREFIX_BYTES..=MAX_PAYLOAD_BYTES).contains(&payload_len) {
            break;
        }
        let start = offset + HEADER_BYTES;
        let Some(payload) = bytes.get(start..start + payload_len) else { break };
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let mut seq = [0; 8];
        seq.copy_from_slice(&payload[..8]);
        let mut count = [0; 4];
        count.copy_from_slice(&payload[8..12]);
        records.push(Record {
            first: JournalSeq(u64::from_le_bytes(seq)),
            count: u32::from_le_bytes(count),
            events_json: &payload[PAYLOAD_PREFIX_BYTES..],
        });
        offset = start + payload_len;
    }
    Scan { records, good_len: offset }
}

pub(crate) fn decode_events(record: &Record<'_>) -> Result<Vec<(JournalSeq, Event)>, serde_json::Error> {
    let events: Vec<Event> = serde_json::from_slice(record.events_json)?;
    Ok(events
        .into_iter()
        .enumerate()
        .map(|(offset, event)| (JournalSeq(record.first.0 + offset as u64), event))
        .collect())
}
