-- One row per accepted message item: (device, seq, ts) identifies a message, so QoS 1
-- redeliveries and device retries are written once (exactly-once effect). Pruned by message
-- age (no second index: it would double the cost of every insert).
CREATE TABLE message_keys (
    device_id  integer NOT NULL,
    seq        bigint NOT NULL,
    ts         timestamptz NOT NULL,
    PRIMARY KEY (device_id, seq, ts)
);
