DROP TABLE event_counts_minute;
