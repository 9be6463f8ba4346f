-- One lease per community for scaled-out gateways: the holder runs that community's rules until
-- expires_at unless it renews. epoch is a fencing token, bumped on each takeover, so writes from a
-- holder that lost its lease can be told apart and refused.
CREATE TABLE community_leases (
    community    text PRIMARY KEY,
    holder       text NOT NULL,
    epoch        bigint NOT NULL DEFAULT 1,
    acquired_at  timestamptz NOT NULL DEFAULT now(),
    renewed_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
