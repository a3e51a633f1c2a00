# One image for the API and both kinds of worker; docker-compose.yml picks the command.
# Checked by tests/deploy (pinned base, constraints layer, non-root user, healthcheck).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies in a layer of their own, pinned by the constraints file: only a change to
# pyproject.toml or constraints.txt reinstalls them. Empty package folders (and an empty
# README, which pyproject.toml names) let pip resolve the dependencies without the source.
COPY pyproject.toml constraints.txt ./
RUN mkdir -p api worker shared cli \
    && touch README.md api/__init__.py worker/__init__.py shared/__init__.py cli/__init__.py \
    && pip install -c constraints.txt . \
    && pip uninstall -y runtime-v-training \
    && rm -rf api worker shared cli README.md build ./*.egg-info

COPY README.md ./
COPY shared ./shared
COPY worker ./worker
COPY api ./api
COPY cli ./cli
RUN pip install --no-deps -c constraints.txt . && rm -rf build ./*.egg-info

RUN useradd --create-home --uid 10001 rvt \
    && mkdir -p /app/models /app/data \
    && chown rvt:rvt /app/models /app/data
USER rvt

ENV MODELS_DIR=/app/models \
    DATA_DIR=/app/data \
    PORT=8000

EXPOSE 8000
# The API's; compose gives each worker its own (python -m cli.healthcheck worker QUEUE).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "cli.healthcheck", "api"]

# API_WORKERS uvicorn processes (default 1) with their metrics summed: api/server.py.
CMD ["python", "-m", "api.server", "--host", "0.0.0.0", "--port", "8000"]
