-- The current (or last) alarm of each (rule, subject), and every change to it.
CREATE TABLE alarms (
    key            text PRIMARY KEY,
    community      text NOT NULL,
    rule           text NOT NULL,
    subject        text NOT NULL,
    subject_type   text NOT NULL,
    severity       text NOT NULL,
    status         text NOT NULL,
    dispatch       text NOT NULL,
    building       text,
    floor          smallint,
    device         text,
    raised_at      timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    count          integer NOT NULL,
    detail         text NOT NULL,
    acked_at       timestamptz,
    acked_by       text,
    ack_comment    text,
    cleared_at     timestamptz,
    cleared_by     text,
    shelved_until  timestamptz,
    flapping       boolean NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alarms_active ON alarms (community, status);
CREATE TABLE alarm_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL,
    community  text NOT NULL,
    key        text NOT NULL,
    kind       text NOT NULL,
    severity   text NOT NULL,
    status     text,
    by         text,
    detail     text NOT NULL,
    event      jsonb NOT NULL
);
CREATE INDEX alarm_events_key ON alarm_events (key, at);
CREATE INDEX alarm_events_at ON alarm_events (community, at);
-- Rule engine state per community (durations in progress, windows, alarm book), so a
-- restart forgets nothing.
CREATE TABLE rule_state (
    community  text PRIMARY KEY,
    snapshot   jsonb NOT NULL,
    saved_at   timestamptz NOT NULL
);
