-- Dispatch tickets (gateway/tickets/service.py, twin/tickets.py). Deadlines and raised alerts live here,
-- so the SLA watchdog continues after a restart; next_alert_at is when it must look next.
CREATE TABLE tickets (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    community       text NOT NULL,
    title           text NOT NULL,
    category        text NOT NULL,
    priority        text NOT NULL,
    state           text NOT NULL,
    source          text NOT NULL,
    rule            text,
    life_safety     boolean NOT NULL DEFAULT false,
    building        text,
    floor           smallint,
    unit            text,
    device          text,
    grid            text,
    assignee        text,
    assignee_role   text,
    escalated_to    text,
    collaborator    text,
    description     text NOT NULL DEFAULT '',
    reporter        text NOT NULL,
    contact         text,
    keys            text[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL,
    clock_start     timestamptz NOT NULL,
    respond_by      timestamptz NOT NULL,
    resolve_by      timestamptz,
    progress_from   timestamptz,
    progress_by     timestamptz,
    responded_at    timestamptz,
    accepted_at     timestamptz,
    resolved_at     timestamptz,
    closed_at       timestamptz,
    last_alarm_at   timestamptz,
    alerts          text[] NOT NULL DEFAULT '{}',
    breaches        integer NOT NULL DEFAULT 0,
    escalations     integer NOT NULL DEFAULT 0,
    reopens         integer NOT NULL DEFAULT 0,
    plan_submitted  boolean NOT NULL DEFAULT false,
    cancel_reason   text,
    rating          smallint CHECK (rating BETWEEN 1 AND 5),
    rating_comment  text,
    rated_at        timestamptz,
    rate_token      text NOT NULL UNIQUE,
    next_alert_at   timestamptz,
    context         jsonb NOT NULL DEFAULT '{}',
    version         integer NOT NULL DEFAULT 1,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tickets_state ON tickets (community, state);
CREATE INDEX tickets_created ON tickets (created_at);
CREATE INDEX tickets_due ON tickets (next_alert_at) WHERE next_alert_at IS NOT NULL;
CREATE INDEX tickets_keys ON tickets USING gin (keys);
-- Every transition and note: who, when, what, optional photo.
CREATE TABLE ticket_photos (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id     bigint NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    kind          text NOT NULL,
    content_type  text NOT NULL,
    bytes         bytea NOT NULL,
    uploaded_by   text NOT NULL,
    at            timestamptz NOT NULL
);
CREATE INDEX ticket_photos_ticket ON ticket_photos (ticket_id);
CREATE TABLE ticket_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id   bigint NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    action      text NOT NULL,
    from_state  text,
    to_state    text NOT NULL,
    actor       text NOT NULL,
    note        text NOT NULL DEFAULT '',
    photo_id    bigint REFERENCES ticket_photos(id) ON DELETE SET NULL,
    version     integer NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ticket_events_ticket ON ticket_events (ticket_id, id);
-- The alarms that make up each ticket's incident.
CREATE TABLE ticket_alarms (
    ticket_id   bigint NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    alarm_key   text NOT NULL,
    rule        text NOT NULL,
    severity    text NOT NULL,
    subject     text NOT NULL,
    device      text,
    building    text,
    floor       smallint,
    detail      text NOT NULL,
    first_at    timestamptz NOT NULL,
    last_at     timestamptz NOT NULL,
    count       integer NOT NULL DEFAULT 1,
    cleared_at  timestamptz,
    PRIMARY KEY (ticket_id, alarm_key)
);
CREATE INDEX ticket_alarms_key ON ticket_alarms (alarm_key);
