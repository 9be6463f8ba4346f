-- The care register (关爱台账, seed 3.2; gateway/care/, twin/care.py, docs/care.md): residents needing care with their
-- level, the visits logged by grid workers, the level changes with their reasons, and the ticket raised for each
-- overdue visit. Seeded from the community file's care_units; from then on the register is what counts.
CREATE TABLE care_residents (
    id               bigserial PRIMARY KEY,
    community        text NOT NULL,
    unit             text NOT NULL,
    building         text NOT NULL,
    floor            integer NOT NULL,
    grid             text,
    name             text,
    category         text CHECK (category IN ('living_alone', 'disabled', 'hardship', 'other')),
    mobility_limited boolean NOT NULL DEFAULT false,
    phone            text,
    level            text NOT NULL CHECK (level IN ('red', 'yellow', 'green')),
    registered_at    timestamptz NOT NULL,
    level_changed_at timestamptz,
    last_visit_at    timestamptz,
    version          integer NOT NULL DEFAULT 1,
    UNIQUE (community, unit)
);
CREATE INDEX care_residents_building ON care_residents (community, building);

CREATE TABLE care_visits (
    id          bigserial PRIMARY KEY,
    resident_id bigint NOT NULL REFERENCES care_residents(id) ON DELETE CASCADE,
    visited_at  timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    visitor     text NOT NULL,
    note        text NOT NULL DEFAULT '',
    checks      jsonb NOT NULL DEFAULT '{}',
    photo_type  text,
    photo       bytea,
    CHECK ((photo IS NULL) = (photo_type IS NULL))
);
CREATE INDEX care_visits_resident ON care_visits (resident_id, visited_at DESC);

CREATE TABLE care_level_changes (
    id          bigserial PRIMARY KEY,
    resident_id bigint NOT NULL REFERENCES care_residents(id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    by_user     text NOT NULL,
    from_level  text NOT NULL,
    to_level    text NOT NULL,
    reason      text NOT NULL CHECK (length(reason) > 0)
);
CREATE INDEX care_level_changes_resident ON care_level_changes (resident_id, at DESC);

-- one ticket per overdue visit (the resident and the date it was due by), whichever gateway saw it first
CREATE TABLE care_overdue_tickets (
    resident_id bigint NOT NULL REFERENCES care_residents(id) ON DELETE CASCADE,
    due         date NOT NULL,
    ticket_id   bigint NOT NULL REFERENCES tickets(id) ON DELETE CASCADE,
    raised_at   timestamptz NOT NULL,
    PRIMARY KEY (resident_id, due)
);
