//! The tables diesel's query builder reads; `migrations/` is the source of truth.

diesel::table! {
    dead_letters (id) {
        id -> Uuid,
        event_id -> Uuid,
        service -> Text,
        original_event -> Text,
        failure_reason -> Text,
        retry_count -> Integer,
        last_attempt_at -> Timestamptz,
        reprocessed -> Bool,
        reprocessed_at -> Nullable<Timestamptz>,
        original_timestamp -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}
