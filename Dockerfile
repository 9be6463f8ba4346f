# gridtwin application image: the gateway, the dashboard, the simulator and the CLI.
# Used by docker-compose.yml (services migrate, gateway, dashboard, simulator); the compose `command`
# gives the gridtwin subcommand, e.g. `gateway` runs `gridtwin gateway`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . /src
RUN pip install /src \
    && useradd --system --uid 10001 --home-dir /var/lib/gridtwin --shell /usr/sbin/nologin gridtwin \
    && mkdir -p /var/lib/gridtwin \
    && chown gridtwin:gridtwin /var/lib/gridtwin \
    && rm -rf /src

# Spool, artifacts and other run-time files (a named volume for the gateway in docker-compose.yml).
ENV GRIDTWIN_DATA_DIR=/var/lib/gridtwin
WORKDIR /var/lib/gridtwin
USER gridtwin

ENTRYPOINT ["gridtwin"]
CMD ["--help"]
