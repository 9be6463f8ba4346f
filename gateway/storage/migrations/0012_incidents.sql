-- Incidents (docs/tickets.md): one ticket per incident, alarm and ticket lifecycles linked.
-- Life-safety clocks that time arrival on site and (entrapment) the release of the trapped people, and why a
-- ticket was resolved or closed while its life-safety alarms were active (false_alarm | device_fault | other).
ALTER TABLE tickets ADD COLUMN arrive_by timestamptz;
ALTER TABLE tickets ADD COLUMN arrived_at timestamptz;
ALTER TABLE tickets ADD COLUMN release_by timestamptz;
ALTER TABLE tickets ADD COLUMN released_at timestamptz;
ALTER TABLE tickets ADD COLUMN close_reason text;
ALTER TABLE tickets ADD COLUMN close_note text;
-- Each alarm of a ticket: whether it is life-safety (a ticket is not resolved while one is active without a
-- reason), and the reason given for it (the false-alarm statistics per device and rule count these).
ALTER TABLE ticket_alarms ADD COLUMN life_safety boolean NOT NULL DEFAULT false;
ALTER TABLE ticket_alarms ADD COLUMN close_reason text;
ALTER TABLE ticket_alarms ADD COLUMN close_note text;
ALTER TABLE ticket_alarms ADD COLUMN closed_by text;
ALTER TABLE ticket_alarms ADD COLUMN closed_at timestamptz;
CREATE INDEX ticket_alarms_first ON ticket_alarms (first_at);
CREATE INDEX ticket_alarms_active ON ticket_alarms (ticket_id) WHERE cleared_at IS NULL AND life_safety;
