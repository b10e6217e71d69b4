#!/usr/bin/env bash
# Seeds a migrated Aurore database with EVENTS events spread evenly over the DAYS days
# before today (UTC), across the ten services ../shared/bench/get_events.lua queries, and
# their hourly counts, for query and health benchmarks. Usage:
#   scripts/seed-events.sh DATABASE_URL [EVENTS=1000000] [DAYS=7]
set -euo pipefail
url=${1:?usage: scripts/seed-events.sh DATABASE_URL [EVENTS] [DAYS]}
events=${2:-1000000}
days=${3:-7}
psql "$url" -v ON_ERROR_STOP=1 -q <<SQL
SELECT count(*) AS partitions_created
FROM generate_series(0, $days) AS d WHERE aurore_ensure_event_partition((current_date - d)::date);
WITH services(n, name) AS (
    SELECT * FROM unnest(ARRAY[0,1,2,3,4,5,6,7,8,9], ARRAY['auth-service','payment-service','user-service',
        'order-service','inventory-service','notification-service','search-service','shipping-service',
        'billing-service','analytics-service'])
)
INSERT INTO events (id, "timestamp", service, message, metadata, ingested_at)
SELECT gen_random_uuid(),
       (current_date - $days)::timestamp AT TIME ZONE 'UTC' + i * (interval '1 day' * $days / $events),
       s.name, 'seeded event ' || i, jsonb_build_object('request_id', i, 'region', 'eu-west-1'), now()
FROM generate_series(0, $events - 1) AS i JOIN services s ON s.n = i % 10;
INSERT INTO event_counts (service, hour, events)
SELECT service, date_trunc('hour', "timestamp", 'UTC'), count(*) FROM events GROUP BY 1, 2
ON CONFLICT (service, hour) DO UPDATE SET events = EXCLUDED.events;
ANALYZE events;
ANALYZE event_counts;
SQL
echo "seeded $events events over $days days into $url"
