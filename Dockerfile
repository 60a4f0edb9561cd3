# syntax=docker/dockerfile:1
# The hub as a container: the package (with the browser apps inside it as hub/static) is
# installed into a virtual environment in the build stage and copied into a slim runtime.

# --- build: the hub and its dependencies, installed into a virtual environment ---
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

WORKDIR /src
# pyproject.toml reads README.md (readme) and hub/__init__.py (version) at build time, and
# packages static/ as hub/static
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY static ./static
RUN pip install . && cd / && python -c "import hub.app; assert hub.app.STATIC.is_dir()"

# --- runtime ---
FROM python:3.11-slim

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HUB_HOST=0.0.0.0 \
    HUB_PORT=8000 \
    HUB_DATA_DIR=/var/lib/hub

# HUB_DATA_DIR holds the embedded (SQLite) database and its generated secret: mount a volume
# there to keep them. On MySQL it is unused (HUB_SECRET_KEY comes from the environment).
RUN groupadd --system --gid 10001 hub \
    && useradd --system --uid 10001 --gid hub --home-dir /var/lib/hub --no-create-home \
        --shell /usr/sbin/nologin hub \
    && install -d -o hub -g hub -m 0750 /var/lib/hub

COPY --from=build /opt/venv /opt/venv

WORKDIR /var/lib/hub
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]
CMD ["python", "-m", "hub", "serve"]
