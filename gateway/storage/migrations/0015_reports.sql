-- One-click reports (一键上报, gateway/reports/): a ticket a grid worker or a resident reported, its category
-- (twin/report_categories.yaml) and whether a resolved one waits for the supervisor's check (核查). The check
-- itself is in ticket_events (verify_pass / verify_fail). A resident follows the report through a tracking link
-- whose token only the resident holds: only its SHA-256 is stored here.
CREATE TABLE ticket_reports (
    ticket_id    bigint PRIMARY KEY REFERENCES tickets(id) ON DELETE CASCADE,
    community    text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('staff', 'resident')),
    category     text NOT NULL,
    verify       boolean NOT NULL DEFAULT false,
    track_hash   bytea UNIQUE CHECK (track_hash IS NULL OR length(track_hash) = 32),
    reporter     text NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX ticket_reports_verify ON ticket_reports (community) WHERE verify;
