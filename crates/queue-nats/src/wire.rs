//! What a message carries: a batch of events as JSON (the journal's own encoding), the
//! id the stream deduplicates it by, and the trace span that published it.

use async_nats::HeaderMap;
use aurore_domain::{Event, TraceLink};

/// Header naming the positions of a reported batch's events that were dead-lettered.
pub(crate) const REFUSED: &str = "Aurore-Refused";
const TRACEPARENT: &str = "traceparent";

/// Namespace of message ids (UUIDv5 of the events' ids).
const MESSAGE_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f1c_8e0a_3d4b_4a52_9b7e_5a0d_2c61_f3e8);

pub(crate) fn encode(events: &[&Event]) -> Vec<u8> {
    // Events serialise infallibly: their metadata is already JSON.
    serde_json::to_vec(events).unwrap_or_default()
}

pub(crate) fn decode(payload: &[u8]) -> Result<Vec<Event>, serde_json::Error> {
    serde_json::from_slice(payload)
}

/// The same events in the same order always get the same id, so a batch sent again after
/// a lost PubAck is dropped by the stream; any other batch gets another.
pub(crate) fn message_id(events: &[&Event]) -> String {
    let mut ids = Vec::with_capacity(events.len() * 16);
    for event in events {
        ids.extend_from_slice(event.id.as_uuid().as_bytes());
    }
    uuid::Uuid::new_v5(&MESSAGE_ID_NAMESPACE, &ids).to_string()
}

/// W3C `traceparent` of the span publishing the batch, so the writer's span links to it.
pub(crate) fn put_trace(headers: &mut HeaderMap, link: Option<TraceLink>) {
    if let Some(link) = link {
        headers.insert(TRACEPARENT, format!("00-{}-{}-01", hex(&link.trace_id), hex(&link.span_id)).as_str());
    }
}

pub(crate) fn trace(headers: Option<&HeaderMap>) -> Option<TraceLink> {
    let value = headers?.get(TRACEPARENT)?.as_str();
    let mut parts = value.split('-');
    let (Some("00"), Some(trace), Some(span)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    Some(TraceLink { trace_id: unhex(trace)?, span_id: unhex(span)? })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0; N];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The positions in a header value such as `3,7`; unreadable ones are skipped.
pub(crate) fn refused(headers: Option<&HeaderMap>) -> Vec<usize> {
    headers
        .and_then(|headers| headers.get(REFUSED))
        .map(|value| value.as_str().split(',').filter_map(|index| index.trim().parse().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_link_crosses_the_hop_and_nonsense_is_ignored() {
        let link = TraceLink { trace_id: [0xab; 16], span_id: [0x01; 8] };
        let mut headers = HeaderMap::new();
        put_trace(&mut headers, Some(link));
        assert_eq!(trace(Some(&headers)), Some(link));
        for nonsense in
            ["", "00-zz-01", "01-abababababababababababababababab-0101010101010101-01", "00-ab-0101010101010101-01"]
        {
            let mut headers = HeaderMap::new();
            headers.insert(TRACEPARENT, nonsense);
            assert_eq!(trace(Some(&headers)), None, "{nonsense:?}");
        }
    }
}
