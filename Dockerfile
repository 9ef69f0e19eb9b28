# syntax=docker/dockerfile:1
# twinflow's container image: `twinflow` is the entry point, so the arguments are a command.
#
#   docker build -t twinflow .                          # every connector (EXTRAS=all)
#   docker build --build-arg EXTRAS=mqtt,postgres -t twinflow:mqtt .
#   docker build --build-arg EXTRAS= -t twinflow:core . # no connector library at all
#   docker run --rm twinflow demo --twins 10 --duration 1h
#
# Two stages: the first installs twinflow and its extras into a virtual environment (the
# wheels of bytewax, confluent-kafka and psycopg need no compiler), the second copies only
# that environment onto a slim Python base and runs as an unprivileged user.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ARG EXTRAS=all
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/twinflow
COPY pyproject.toml setup.py README.md ./
COPY twinflow/ twinflow/
COPY flows/ flows/
COPY connectors/ connectors/
COPY operators/ operators/
COPY models/ models/
COPY infra/migrations/ infra/migrations/
RUN /opt/twinflow/bin/pip install ".${EXTRAS:+[${EXTRAS}]}" \
    && /opt/twinflow/bin/twinflow --help > /dev/null

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG UID=10001
LABEL org.opencontainers.image.title="twinflow" \
      org.opencontainers.image.description="Streaming digital twins as Bytewax dataflows" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --system --uid "${UID}" --user-group --home-dir /var/lib/twinflow \
        --shell /usr/sbin/nologin twinflow \
    && mkdir -p /var/lib/twinflow \
    && chown "${UID}:${UID}" /var/lib/twinflow \
    && chmod 0700 /var/lib/twinflow
COPY --from=build /opt/twinflow /opt/twinflow
COPY infra/examples/ /opt/twinflow/examples/
ENV PATH=/opt/twinflow/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /var/lib/twinflow
# Recovery snapshots and file outputs live here; mount a volume to keep them.
VOLUME ["/var/lib/twinflow"]
# 9100: Prometheus metrics (--metrics-port); 2101: Bytewax cluster traffic (--addresses).
EXPOSE 9100 2101
USER ${UID}:${UID}
ENTRYPOINT ["twinflow"]
CMD ["--help"]
