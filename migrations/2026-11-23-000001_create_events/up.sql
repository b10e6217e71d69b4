-- Events, range-partitioned by day on the event timestamp (UTC days). Daily partitions
-- make retention a DROP TABLE and keep each index small; the default partition catches
-- events for days that have no partition yet, so no write is ever refused for its date.
CREATE TABLE events (
    id          uuid        NOT NULL,
    "timestamp" timestamptz NOT NULL,
    service     text        NOT NULL,
    message     text        NOT NULL,
    metadata    jsonb,
    ingested_at timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Unique keys on a partitioned table must contain the partition key.
    PRIMARY KEY ("timestamp", id)
) PARTITION BY RANGE ("timestamp");

-- Serves "service S between T1 and T2" in either order, with id as the keyset tie-breaker.
CREATE INDEX events_service_timestamp_id_idx ON events (service, "timestamp" DESC, id DESC);

CREATE TABLE events_default PARTITION OF events DEFAULT;

-- Creates the partition for one UTC day unless it exists; returns whether it created it.
-- Rows of that day already in the default partition move into the new partition first,
-- otherwise attaching would fail. An advisory lock keeps concurrent replicas apart.
CREATE FUNCTION aurore_ensure_event_partition(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    partition_name text := format('events_p%s', to_char(day, 'YYYYMMDD'));
    lower_bound timestamptz := day::timestamp AT TIME ZONE 'UTC';
    upper_bound timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('aurore_event_partitions'));
    IF to_regclass(partition_name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS)', partition_name);
    EXECUTE format(
        'WITH moved AS (DELETE FROM events_default WHERE "timestamp" >= %L AND "timestamp" < %L RETURNING *)
         INSERT INTO %I SELECT * FROM moved',
        lower_bound, upper_bound, partition_name);
    EXECUTE format('ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
        partition_name, lower_bound, upper_bound);
    RETURN true;
END
$$;
