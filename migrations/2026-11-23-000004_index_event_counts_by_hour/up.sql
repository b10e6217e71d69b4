-- /health/business reads the last 24 hours of every service.
CREATE INDEX event_counts_hour ON event_counts (hour);
