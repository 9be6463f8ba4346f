CREATE TABLE latest_values (
    device_id  integer NOT NULL,
    metric_id  smallint NOT NULL,
    value      double precision NOT NULL,
    ts         timestamptz NOT NULL,
    PRIMARY KEY (device_id, metric_id)
);
INSERT INTO latest_values (device_id, metric_id, value, ts)
    SELECT DISTINCT ON (device_id, metric_id) device_id, metric_id, value, ts
    FROM telemetry ORDER BY device_id, metric_id, ts DESC;
