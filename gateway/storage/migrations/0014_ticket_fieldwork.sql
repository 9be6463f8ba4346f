-- The worker on site (issue 15): where the phone was when the worker pressed 到场 (arrived), if the phone
-- told (browser geolocation, WGS 84 degrees; accuracy in metres, the 95 % radius the phone reports).
-- Empty when the worker denied it or the phone had none: the arrival counts all the same.
-- SOP checklist ticks are ticket_events with action 'sop_check' (detail: sop, step, done), no table of their own.
ALTER TABLE tickets ADD COLUMN arrived_lat double precision CHECK (arrived_lat BETWEEN -90 AND 90);
ALTER TABLE tickets ADD COLUMN arrived_lon double precision CHECK (arrived_lon BETWEEN -180 AND 180);
ALTER TABLE tickets ADD COLUMN arrived_accuracy_m real CHECK (arrived_accuracy_m >= 0);
ALTER TABLE tickets ADD CONSTRAINT tickets_arrived_position CHECK (
    (arrived_lat IS NULL) = (arrived_lon IS NULL) AND (arrived_accuracy_m IS NULL OR arrived_lat IS NOT NULL));
CREATE INDEX ticket_events_sop ON ticket_events (ticket_id, id) WHERE action = 'sop_check';
