-- Tickets run on server time (issue 11): received_at is when the gateway got the alarm (the SLA
-- clocks and the duty roster start there, as created_at); occurred_at is the device's own time of
-- the alarm, kept for the record. Tickets from before only know created_at.
ALTER TABLE tickets ADD COLUMN occurred_at timestamptz;
ALTER TABLE tickets ADD COLUMN received_at timestamptz;
UPDATE tickets SET occurred_at = created_at, received_at = created_at;
