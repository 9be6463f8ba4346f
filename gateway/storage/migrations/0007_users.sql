-- API users (gateway/api/auth.py): argon2 password hashes; login tokens stored as SHA-256 only.
CREATE TABLE users (
    username       text PRIMARY KEY,
    display_name   text NOT NULL,
    role           text NOT NULL,
    grids          text[] NOT NULL DEFAULT '{}',
    worker_id      text,
    password_hash  text NOT NULL,
    disabled       boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE api_tokens (
    token_hash  text PRIMARY KEY,
    username    text NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX api_tokens_expires ON api_tokens (expires_at);
