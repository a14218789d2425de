# syntax=docker/dockerfile:1
#
# kti-policy decision service.
#
#   docker build -t kti-policy .
#   docker run -p 8080:8080 -e KTI_API_KEYS='...:query,...:admin' -v kti-instance:/instance kti-policy
#
# Two stages: durable-rules 2.0.28 ships only as a source distribution with a C extension, so the
# compiler and headers live in the build stage only. There every dependency is built as a wheel and
# installed into a virtualenv (/opt/venv); the runtime stage copies that virtualenv onto a clean
# python:3.11-slim and runs gunicorn as an unprivileged user.
#
# tests/test_dockerfile.py checks this file (stages, user, health check, entry point, COPY sources)
# and runs the build stage's RUN steps in a temporary virtualenv.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build stage: compiler, wheels, virtualenv ---------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    WHEELS=/wheels \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src

RUN python -m venv "$VIRTUAL_ENV" \
    && "$VIRTUAL_ENV/bin/pip" install --upgrade pip wheel
# every dependency as a wheel (durable-rules compiles here), then install only from those wheels
RUN "$VIRTUAL_ENV/bin/pip" wheel --wheel-dir "$WHEELS" .
RUN "$VIRTUAL_ENV/bin/pip" install --no-index --find-links "$WHEELS" kti-policy \
    && "$VIRTUAL_ENV/bin/python" -c "import durable_rules_engine, kti_policy.app"

# --- runtime stage: no compiler, non-root ---------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# KTI_BIND is read by gunicorn.conf.py. Without KTI_API_KEYS the service refuses to bind 0.0.0.0:
# pass keys with -e KTI_API_KEYS=... (or KTI_BIND=127.0.0.1:8080 for a loopback-only container).
# KTI_DATABASE_URL: unset means SQLite in /instance; set postgresql://user@host/db for PostgreSQL.
# KTI_PSEUDONYM_KEY: unset means a key generated once and kept in /instance (keep that volume).
# KTI_DECISION_LOG: the decision log (one JSON line per decision) goes to a file in its own volume.
# "-" (stdout) also works, but on a pipe only lines up to 4 KiB stay whole when several workers
# write at once, so a file is the default for the compliance record.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KTI_BIND=0.0.0.0:8080 \
    KTI_POLICY_DIR=/policies \
    KTI_HOOKS_DIR=/hooks \
    KTI_INSTANCE_DIR=/instance \
    KTI_DECISION_LOG=/var/log/kti/decisions.jsonl

RUN groupadd --system --gid 10001 kti \
    && useradd --system --uid 10001 --gid kti --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin kti \
    && mkdir -p /app /policies /hooks /instance /var/log/kti \
    && chown kti:kti /instance /var/log/kti

COPY --from=build /opt/venv /opt/venv
COPY gunicorn.conf.py /app/gunicorn.conf.py
# the shipped policy pack is the default content of the /policies volume; mount your own over it
COPY policies/ /policies/

WORKDIR /app
VOLUME ["/policies", "/hooks", "/instance", "/var/log/kti"]
USER 10001:10001
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('KTI_BIND', '127.0.0.1:8080').rsplit(':', 1)[-1]; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]

CMD ["gunicorn", "-c", "/app/gunicorn.conf.py", "kti_policy.app:create_app()"]
