"""Simulated devices for gridtwin. Depends only on ``twin`` (plus paho-mqtt, pydantic, orjson, PyYAML).

- :mod:`simulators.behaviour` - pure, seeded behaviour models per catalogue kind;
- :mod:`simulators.scenario` - declarative scenario files (``scenarios/*.yaml``), role selectors;
- :mod:`simulators.engine` - a compiled scenario -> time-ordered messages (pure);
- :mod:`simulators.run` - pacing, sinks (stdout, one connection, one client per device) and the CLI jobs;
- :mod:`simulators.mqtt` - paho connections: shared, or per device with a last will;
- :mod:`simulators.scale` / :mod:`simulators.wire` - high-rate runs over one batching connection;
- :mod:`simulators.hostile` - malformed traffic with the outcome the gateway should give each message;
- :mod:`simulators.publisher` - the simple round-robin telemetry stream the demo uses.
"""
