-- Events the store refused for their data, kept for review and replay. The original
-- event is kept as JSON text: its escapes (e.g. \u0000) are exactly what text and jsonb
-- columns refuse once decoded, which is often why the event is here.
CREATE TABLE dead_letters (
    id                 uuid        PRIMARY KEY,
    event_id           uuid        NOT NULL,
    service            text        NOT NULL,
    original_event     text        NOT NULL,
    failure_reason     text        NOT NULL,
    retry_count        integer     NOT NULL,
    last_attempt_at    timestamptz NOT NULL,
    reprocessed        boolean     NOT NULL DEFAULT false,
    reprocessed_at     timestamptz,
    original_timestamp timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX dead_letters_created_idx ON dead_letters (created_at DESC);
CREATE INDEX dead_letters_service_created_idx ON dead_letters (service, created_at DESC);
