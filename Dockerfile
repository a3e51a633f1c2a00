# One image for the API and both kinds of worker; docker-compose.yml picks the command.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies in a layer of their own, pinned by the constraints file: source edits do not
# reinstall them. Empty package folders let pip resolve the project's dependencies.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir -p api worker shared \
    && touch api/__init__.py worker/__init__.py shared/__init__.py \
    && pip install -c constraints.txt . \
    && pip uninstall -y runtime-v-training \
    && rm -rf api worker shared

COPY api ./api
COPY worker ./worker
COPY shared ./shared
RUN pip install --no-deps -c constraints.txt .

RUN useradd --create-home --uid 10001 rvt \
    && mkdir -p /app/models /app/data \
    && chown rvt:rvt /app/models /app/data
USER rvt

ENV MODELS_DIR=/app/models \
    DATA_DIR=/app/data \
    PORT=8000

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"

CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000", "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
