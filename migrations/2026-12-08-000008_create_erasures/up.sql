-- The audit trail of erasures, and what writers consult before each batch: an event
-- ingested until `requested_at` that an erasure selects is never stored. `filter` is the
-- canonical spelling of the filter with its values in stored form (pseudonyms where rules
-- hash), so the trail holds no raw value a rule removes.
CREATE TABLE erasures (
    id           bigserial   PRIMARY KEY,
    requested_at timestamptz NOT NULL,
    service      text,
    range_from   timestamptz,
    range_to     timestamptz,
    filter       text        NOT NULL,
    key_digest   text        NOT NULL,
    events       bigint,
    dead_letters bigint,
    completed_at timestamptz,
    took_ms      bigint
);
