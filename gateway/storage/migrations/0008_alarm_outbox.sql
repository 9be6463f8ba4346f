-- Transactional outbox (docs/alarm-path.md): alarm events commit in the same transaction as the
-- readings that raised them; the dispatch worker turns each into ticket work exactly once and
-- marks it in the same transaction as the ticket change. Events already in the table were
-- dispatched by the in-memory queue this replaces.
ALTER TABLE alarm_events ADD COLUMN uid uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE alarm_events ADD COLUMN dispatched_at timestamptz;
ALTER TABLE alarm_events ADD COLUMN dispatch_error text;
UPDATE alarm_events SET dispatched_at = now();
CREATE UNIQUE INDEX alarm_events_uid ON alarm_events (uid);
CREATE INDEX alarm_events_pending ON alarm_events (id) WHERE dispatched_at IS NULL;
