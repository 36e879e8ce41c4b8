# One image for the CLS services; docker-compose.yml gives each service its command
# (python -m api_service | event_jobs | status_ingester | reconciler_stub).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY pyproject.toml ./
COPY shared_models ./shared_models
COPY cls_runtime ./cls_runtime
COPY cls_core ./cls_core
COPY api_service ./api_service
COPY event_jobs ./event_jobs
COPY status_ingester ./status_ingester
COPY reconciler_stub ./reconciler_stub
RUN pip install . \
    && rm -rf build *.egg-info

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin cls
USER cls

EXPOSE 8080
