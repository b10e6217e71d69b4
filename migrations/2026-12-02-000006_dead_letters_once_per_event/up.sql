-- An event has at most one pending dead letter: replaying a journal after a crash puts
-- the same poison event again, and that must not add an entry. Earlier duplicates are
-- folded into the oldest pending entry.
DELETE FROM dead_letters AS later
USING dead_letters AS earlier
WHERE NOT later.reprocessed AND NOT earlier.reprocessed
  AND later.event_id = earlier.event_id
  AND (later.created_at, later.id) > (earlier.created_at, earlier.id);

CREATE UNIQUE INDEX dead_letters_pending_event_key ON dead_letters (event_id) WHERE NOT reprocessed;
