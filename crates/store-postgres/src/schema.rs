//! The `events` table as diesel sees it; `migrations/` is the source of truth.

diesel::table! {
    events (timestamp, id) {
        id -> Uuid,
        timestamp -> Timestamptz,
        service -> Text,
        message -> Text,
        metadata -> Nullable<Jsonb>,
        ingested_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}
