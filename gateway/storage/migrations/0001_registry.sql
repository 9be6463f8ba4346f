CREATE TABLE communities (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL,
    origin_lat  double precision NOT NULL,
    origin_lon  double precision NOT NULL,
    document    jsonb NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE buildings (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    community_id  integer NOT NULL REFERENCES communities(id) ON DELETE CASCADE,
    code          text NOT NULL,
    name          text NOT NULL,
    grid          text,
    floors_above  smallint NOT NULL,
    floors_below  smallint NOT NULL,
    floor_height  real NOT NULL,
    use           text NOT NULL,
    footprint     jsonb NOT NULL,
    retired_at    timestamptz,
    UNIQUE (community_id, code)
);
CREATE TABLE floors (
    building_id  integer NOT NULL REFERENCES buildings(id) ON DELETE CASCADE,
    number       smallint NOT NULL,
    PRIMARY KEY (building_id, number)
);
CREATE TABLE devices (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    community_id  integer NOT NULL REFERENCES communities(id) ON DELETE CASCADE,
    code          text NOT NULL,
    kind          text NOT NULL,
    building_id   integer REFERENCES buildings(id),
    floor         smallint,
    attrs         jsonb NOT NULL DEFAULT '{}',
    retired_at    timestamptz,
    UNIQUE (community_id, code)
);
CREATE TABLE metrics (
    id    smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name  text NOT NULL UNIQUE
);
