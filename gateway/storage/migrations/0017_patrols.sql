-- Patrols and location (seed 4.1; gateway/patrols/, twin/patrols.py, docs/patrols.md): the key that signs the
-- checkpoints' QR codes, the check-ins at checkpoints, and the on-duty position trail of grid workers (personal data:
-- kept 30 days, deleted on insert and by the gateway's tick).
CREATE TABLE patrol_keys (
    id     smallint PRIMARY KEY CHECK (id = 1),
    secret bytea NOT NULL CHECK (length(secret) >= 32)
);

CREATE TABLE patrol_checkins (
    id          bigserial PRIMARY KEY,
    community   text NOT NULL,
    plan        text NOT NULL,
    checkpoint  text NOT NULL,
    grid        text,
    worker      text NOT NULL,
    at          timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    how         text NOT NULL CHECK (how IN ('qr', 'position')),
    result      text NOT NULL CHECK (result IN ('ok', 'problem')),
    note        text NOT NULL DEFAULT '',
    distance_m  real,
    ticket_id   bigint REFERENCES tickets(id) ON DELETE SET NULL
);
CREATE INDEX patrol_checkins_point ON patrol_checkins (community, checkpoint, at DESC);
CREATE INDEX patrol_checkins_at ON patrol_checkins (community, at);

CREATE TABLE worker_positions (
    id          bigserial PRIMARY KEY,
    community   text NOT NULL,
    worker      text NOT NULL,
    worker_id   text,
    at          timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    x           real NOT NULL,
    y           real NOT NULL,
    accuracy_m  real
);
CREATE INDEX worker_positions_worker ON worker_positions (worker, at DESC);
CREATE INDEX worker_positions_at ON worker_positions (at);
