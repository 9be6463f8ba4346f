CREATE TABLE dead_letters (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    topic     text NOT NULL,
    reason    text NOT NULL,
    detail    text NOT NULL,
    payload   bytea NOT NULL
);
CREATE INDEX dead_letters_at ON dead_letters (at);
CREATE TABLE device_events (
    ts         timestamptz NOT NULL,
    device_id  integer NOT NULL,
    code       text NOT NULL,
    state      text NOT NULL,
    detail     text,
    seq        bigint NOT NULL
);
CREATE INDEX device_events_device_ts ON device_events (device_id, ts DESC);
CREATE TABLE device_status (
    device_id  integer PRIMARY KEY,
    state      text NOT NULL,
    reason     text,
    changed_at timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL
);
