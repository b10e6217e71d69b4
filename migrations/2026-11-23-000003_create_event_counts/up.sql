-- Events per service per UTC hour, maintained in the same transaction as each batch, so a
-- query's total is a sum over hours plus exact counts of the two partial edge hours, not a
-- count of every matching row.
CREATE TABLE event_counts (
    service text        NOT NULL,
    hour    timestamptz NOT NULL,
    events  bigint      NOT NULL,
    PRIMARY KEY (service, hour)
);

INSERT INTO event_counts (service, hour, events)
SELECT service, date_trunc('hour', "timestamp", 'UTC'), count(*)
FROM events
GROUP BY 1, 2;
