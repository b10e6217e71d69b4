DROP FUNCTION aurore_ensure_event_partition(date);
DROP TABLE events;
