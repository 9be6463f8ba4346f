-- What became of the residents' questions to the knowledge assistant (gateway/assistant/outcomes.py): one row per
-- answer shown on the public building page. No personal data: no address, no question text (a handoff's ticket
-- holds that), only the day, the entry shown, whether the assistant was sure, the emergency kind if any, and what
-- the resident did ("helped" yes/no, handed off). ref is a random token the answer page carries to record the
-- resident's feedback. Rows older than a year go on the ticket service's tick (gateway/ops/retention.py).
CREATE TABLE assistant_outcomes (
    ref text PRIMARY KEY,
    community text NOT NULL,
    day date NOT NULL,
    entry text,
    confident boolean NOT NULL,
    urgent text,
    helped boolean,
    handed_off boolean NOT NULL DEFAULT false
);
CREATE INDEX assistant_outcomes_day ON assistant_outcomes (community, day);
