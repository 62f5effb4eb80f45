# One image for every process: `docker run IMAGE api|worker|writer|migrate|init|backend`.

# --- build: resolve and install the pinned dependencies into a venv -------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# dependencies first: this layer is reused until pyproject.toml changes
COPY pyproject.toml README.md ./
RUN mkdir -p queuefront service workers examples \
 && touch queuefront/__init__.py service/__init__.py workers/__init__.py examples/__init__.py \
 && pip install . && pip uninstall -y queuefront
COPY queuefront ./queuefront
COPY service ./service
COPY workers ./workers
COPY examples ./examples
RUN pip install --no-deps . \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
 && rm -rf /opt/venv/lib/python3.11/site-packages/pip* /opt/venv/bin/pip* /opt/venv/bin/activate*

# --- runtime: the venv and nothing else, as a non-root user ------------------------------
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    QF_ROUTES_FILE=/app/examples/routes.toml
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin queuefront
COPY --from=build /opt/venv /opt/venv
COPY examples/routes.toml /app/examples/routes.toml
WORKDIR /app
USER 10001
EXPOSE 8080 9100 9000
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD ["queuefront", "healthcheck"]
ENTRYPOINT ["queuefront"]
CMD ["api"]
