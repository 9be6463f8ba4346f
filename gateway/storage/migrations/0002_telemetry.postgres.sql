CREATE TABLE telemetry (
    ts         timestamptz NOT NULL,
    device_id  integer NOT NULL,
    metric_id  smallint NOT NULL,
    value      double precision NOT NULL,
    flags      smallint NOT NULL DEFAULT 0
) PARTITION BY RANGE (ts);
CREATE INDEX telemetry_device_ts ON telemetry (device_id, ts DESC);
CREATE TABLE telemetry_1m (
    bucket     timestamptz NOT NULL,
    device_id  integer NOT NULL,
    metric_id  smallint NOT NULL,
    samples    integer NOT NULL,
    avg_value  double precision NOT NULL,
    min_value  double precision NOT NULL,
    max_value  double precision NOT NULL,
    PRIMARY KEY (device_id, metric_id, bucket)
);
CREATE TABLE rollup_watermark (
    name   text PRIMARY KEY,
    until  timestamptz NOT NULL
);
