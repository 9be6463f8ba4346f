-- Live gateways in cluster mode: one heartbeat row each, expiring like a lease, so every gateway can
-- compute its fair share of the communities (ceil(communities / live gateways)).
CREATE TABLE IF NOT EXISTS gateway_nodes (
    node        text PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
