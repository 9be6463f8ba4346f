-- Web Push (gateway/notify/push.py): the server's VAPID key pair (one row, made by whichever process needs it
-- first: the web server handing out the public key, or the gateway's notifier signing a push) and each
-- browser's subscription (its push service endpoint and encryption keys), for the person who turned notifications
-- on: `person` is the id their tickets' MQTT topic uses (a worker's id in the community file, else the username).
-- A subscription the push service reports gone (404/410) is deleted.
CREATE TABLE push_keys (
    id          smallint PRIMARY KEY CHECK (id = 1),
    private_pem text NOT NULL,
    public_key  text NOT NULL,            -- the application server key, base64url of the uncompressed P-256 point
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE push_subscriptions (
    endpoint    text PRIMARY KEY,
    person      text NOT NULL,
    username    text NOT NULL,
    p256dh      text NOT NULL,
    auth        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_sent_at timestamptz,
    failures    integer NOT NULL DEFAULT 0
);
CREATE INDEX push_subscriptions_person ON push_subscriptions (person);
