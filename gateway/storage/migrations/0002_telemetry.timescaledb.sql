CREATE TABLE telemetry (
    ts         timestamptz NOT NULL,
    device_id  integer NOT NULL,
    metric_id  smallint NOT NULL,
    value      double precision NOT NULL,
    flags      smallint NOT NULL DEFAULT 0
);
SELECT create_hypertable('telemetry', by_range('ts', INTERVAL '1 day'));
CREATE INDEX telemetry_device_ts ON telemetry (device_id, ts DESC);
ALTER TABLE telemetry SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'device_id, metric_id',
    timescaledb.compress_orderby = 'ts DESC');
SELECT add_compression_policy('telemetry', INTERVAL '2 days');
SELECT add_retention_policy('telemetry', make_interval(days => {retention_days}));
CREATE MATERIALIZED VIEW telemetry_1m WITH (timescaledb.continuous) AS
    SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket, device_id, metric_id,
           count(*)::integer AS samples, avg(value) AS avg_value,
           min(value) AS min_value, max(value) AS max_value
    FROM telemetry GROUP BY 1, 2, 3 WITH NO DATA;
SELECT add_continuous_aggregate_policy('telemetry_1m',
    start_offset => INTERVAL '1 day', end_offset => INTERVAL '1 minute',
    schedule_interval => INTERVAL '1 minute');
