# One image for every process: `docker run IMAGE api|worker|writer|migrate|admin|queues`.
#
# Targets:
#   production (the default, last stage): queuefront, service and workers, the production
#              route table (config/routes.toml) and the RDS CA bundle for verified TLS to
#              Postgres. No demo code: the `backend` role says it is not installed.
#   demo       what `make run`'s processes are, for docker compose: production's code and
#              route table plus examples/ (the demo backend, role `backend`).

# --- build: resolve and install the pinned dependencies into a venv -------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# dependencies first: this layer is reused until pyproject.toml changes
COPY pyproject.toml README.md ./
RUN mkdir -p queuefront service workers \
 && touch queuefront/__init__.py service/__init__.py workers/__init__.py \
 && pip install . && pip uninstall -y queuefront
COPY queuefront ./queuefront
COPY service ./service
COPY workers ./workers
# Bytecode is compiled here, once, and kept: the runtime user cannot write it and
# PYTHONDONTWRITEBYTECODE is set, so without it every process start -- each HEALTHCHECK
# run too, every 5 s in every container -- compiles all it imports (~0.8 s of CPU).
# unchecked-hash: valid whatever the files' mtimes after COPY.
RUN pip install --no-deps . \
 && rm -rf /opt/venv/lib/python3.11/site-packages/pip* /opt/venv/bin/pip* /opt/venv/bin/activate* \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
 && python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/lib

# --- base: the venv and nothing else, as a non-root user ----------------------------------
FROM python:3.11-slim AS base
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    QF_ROUTES_FILE=/app/config/routes.toml
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin queuefront
COPY --from=build /opt/venv /opt/venv
COPY config/routes.toml /app/config/routes.toml
WORKDIR /app
USER 10001
# QF_HTTP_PORT (api, public), QF_METRICS_PORT (every process: /healthz, /readyz, /metrics)
EXPOSE 8080 9100
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD ["queuefront", "healthcheck"]
ENTRYPOINT ["queuefront"]
CMD ["api"]

# --- demo: + the demo backend (docker compose) ---------------------------------------------
FROM base AS demo
COPY examples /opt/venv/lib/python3.11/site-packages/examples
# QF_DEMO_PORT: the demo backend
EXPOSE 9000

# --- production: + the RDS CA bundle (QF_DATABASE_URL says sslmode=verify-full) --------
FROM base AS production
# Amazon RDS's published bundle of every region's CAs; the path is Terraform's
# db_ca_bundle_path (tests/terraform checks the two agree).
ADD --chown=10001:10001 --chmod=0444 \
    https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem \
    /app/certs/rds-global-bundle.pem
