-- Sign-ins for the audit log (/audit): every attempt whose password was checked, from the dashboard's form or
-- the REST API's login; ok = false for a wrong username or password (username as typed). Attempts refused
-- before the password was checked (throttled, locked, busy) are not stored: a flood must not write rows.
CREATE TABLE sign_in_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    username  text NOT NULL,
    ok        boolean NOT NULL,
    client    text NOT NULL DEFAULT '',
    via       text NOT NULL
);
CREATE INDEX sign_in_events_at ON sign_in_events (at);
