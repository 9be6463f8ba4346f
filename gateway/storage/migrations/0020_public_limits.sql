-- The residents' public POSTs' rate limits (report form, rating, assistant asks and handoffs), shared by every
-- gateway: one token bucket per limit and client (gateway/web/public_limits.py). The client is SHA-256 of the
-- salt below and the client address, never the address; a row is deleted once its bucket is full again
-- (full_at, on the ticket service's tick: gateway/ops/retention.py), minutes after the client's last POST.
CREATE TABLE public_limit_salt (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    salt text NOT NULL DEFAULT gen_random_uuid()::text
);
INSERT INTO public_limit_salt DEFAULT VALUES;

CREATE TABLE public_limits (
    name text NOT NULL,
    client bytea NOT NULL,
    tokens double precision NOT NULL,
    at timestamptz NOT NULL,
    full_at timestamptz NOT NULL,
    PRIMARY KEY (name, client)
);
CREATE INDEX public_limits_full_at ON public_limits (full_at);
