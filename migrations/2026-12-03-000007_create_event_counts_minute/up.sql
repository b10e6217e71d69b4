-- Events per service per UTC minute, kept like event_counts (same transaction as each
-- batch, retention subtracting what it deletes) and over the same rows: every stored
-- event, for as long as it is stored. A query's total then counts by index only the two
-- partial edge minutes, and a histogram reads buckets of minutes and hours.
CREATE TABLE event_counts_minute (
    service text        NOT NULL,
    minute  timestamptz NOT NULL,
    events  bigint      NOT NULL,
    PRIMARY KEY (service, minute)
);

-- Retention takes a dropped day's minutes off by range, across services.
CREATE INDEX event_counts_minute_minute ON event_counts_minute (minute);

INSERT INTO event_counts_minute (service, minute, events)
SELECT service, date_trunc('minute', "timestamp", 'UTC'), count(*)
FROM events
GROUP BY 1, 2;
