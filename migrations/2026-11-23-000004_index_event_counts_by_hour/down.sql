DROP INDEX event_counts_hour;
