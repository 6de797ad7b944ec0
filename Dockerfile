# syntax=docker/dockerfile:1
# The MLLP listener container (HL7 v2 over TCP from Trust systems), hosted on Azure Container Apps with TCP
# ingress in an internal VNet environment (infra/bicep/modules/mllp.bicep, infra/README.md). It runs the
# listener `tie run` starts locally (shared.ingest.mllp_listener) through infra/mllp/listener.py, against
# Service Bus and Storage with the managed identity. No secrets in the image: the TLS server certificate is
# mounted from Key Vault at run time.
#
#   docker build -t tie-mllp:<version> .
#
# Non-root (uid 10001), application files owned by root and read-only to it, no bytecode written: the
# container runs with a read-only root filesystem (only /tmp needs to be writable).
# Base image pinned by version tag; pin by digest (python:3.11.13-slim-bookworm@sha256:...) in CI once the
# digest is resolved from the registry.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /build
# The hashed lock (make lock): every wheel is checked against its sha256.
COPY requirements.lock .
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes -r requirements.lock

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    TIE_MLLP_HOST=0.0.0.0 \
    TIE_MLLP_PORT=2575
RUN groupadd --system --gid 10001 tie \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tie
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY shared/ shared/
COPY infra/mllp/listener.py infra/mllp/listener.py
USER 10001:10001
EXPOSE 2575
ENTRYPOINT ["python", "/app/infra/mllp/listener.py"]
