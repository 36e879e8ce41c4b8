"""The FastAPI application: wiring of settings, Redis, services, routes and error handling."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.routing import BaseRoute

from api_service.body_limit import BodyLimitMiddleware
from api_service.deps import AppState, document_identity_headers
from api_service.docs_pages import install_docs_pages
from api_service.error_handlers import install_error_handlers
from api_service.json_guard import JsonGuardMiddleware
from api_service.json_response import OrjsonResponse
from api_service.metrics import ApiMetrics
from api_service.request_context import RequestContextMiddleware, RouteTemplates
from api_service.routes import clusters, health, nodepools, operations, projects, status
from api_service.routes import metrics as metrics_route
from api_service.trusted_proxies import TrustedProxyMiddleware, identity_headers
from cls_core.services.clusters import ClusterService
from cls_core.services.nodepools import NodePoolService
from cls_core.services.operations import OperationService
from cls_core.services.projects import ProjectService
from cls_core.services.status import StatusService
from cls_core.services.watch import WatchService
from cls_core.store import RedisStore
from cls_core.store.redis_store import connect_redis
from cls_runtime.logs import install_record_context, without_password
from cls_runtime.settings import Settings
from event_jobs import EventPipeline

log = logging.getLogger("api_service")


def build_state(settings: Settings) -> AppState:
    store = RedisStore(connect_redis(settings.redis_url), settings.names)
    nodepool_service = NodePoolService(store, settings)
    project_service = ProjectService(store, settings)
    cluster_service = ClusterService(store, settings, nodepool_service, project_service)
    # Watches block on a client of their own: a blocked read waits up to a heartbeat, and
    # holds its connection meanwhile, which the requests' client must not run out of.
    blocking = connect_redis(
        settings.redis_url,
        socket_timeout=settings.watch_heartbeat + 10,
        max_connections=settings.max_connections,  # a watch is an open connection to the API
    )
    watching = store.watching(blocking)
    return AppState(
        settings=settings,
        store=store,
        clusters=cluster_service,
        nodepools=nodepool_service,
        projects=project_service,
        status=StatusService(store, settings),
        operations=OperationService(store, settings),
        watch=WatchService(store, watching, settings, cluster_service, nodepool_service),
    )


def create_app(settings: Settings | None = None, *, relay_events: bool | None = None) -> FastAPI:
    """The API app. It runs the event jobs (outbox relay, reconcile loop) itself when
    ``CLS_EVENT_JOBS`` is ``in-process``; with ``separate``, ``python -m event_jobs``
    runs them and this process has no broker link. ``relay_events`` overrides the setting
    (``False`` leaves committed events in the outbox, for tests that inspect the outbox)."""
    settings = settings or Settings()
    if relay_events is None:
        relay_events = settings.event_jobs == "in-process"

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = build_state(settings)
        app.state.cls = state
        events = EventPipeline(settings, state.store) if relay_events else None
        if events is not None:
            state.readiness_probes["rabbitmq"] = events.broker_connected
            metrics.events = events
            events.start()
        else:
            log.info("event jobs not run here: python -m event_jobs relays the outbox")
        log.info(
            "api ready: namespace=%s redis=%s",
            settings.namespace,
            without_password(settings.redis_url),
        )
        try:
            yield
        finally:
            if events is not None:
                await events.stop()
            await state.watch.watching.aclose()
            await state.store.aclose()

    app = FastAPI(
        title="CLS Backend",
        version="0.1.0",
        description="Manage the node pools of Kubernetes clusters on GCP, AWS and Azure.",
        default_response_class=OrjsonResponse,
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry checks for configured providers on every request and
        # wraps each dependency and endpoint in an operation; this service exports Prometheus
        # metrics (/metrics) and JSON logs instead, so none of it would ever be recorded.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        # FastAPI's /docs and /redoc load their JavaScript from a CDN: install_docs_pages
        # serves the same pages with the files from an installed package instead.
        docs_url=None,
        redoc_url=None,
        routes=api_routes(),
        # /api/v1/clusters/ is a 404 like any unknown path: Starlette's redirect to the path
        # without the slash builds its Location from the client's Host header.
        redirect_slashes=False,
    )
    install_docs_pages(app)
    install_record_context()  # log lines carry the request's context, whoever handles them
    metrics = ApiMetrics()
    app.state.metrics = metrics
    install_error_handlers(app)
    # Each middleware added wraps the ones before: the request context sees every response
    # (413s and 401s included), the size limit bounds the body before the JSON guard reads it.
    app.add_middleware(JsonGuardMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.trusted_networks:
        app.add_middleware(
            TrustedProxyMiddleware,
            networks=settings.trusted_networks,
            identity_headers=identity_headers(settings),
        )
    templates = RouteTemplates()
    app.add_middleware(RequestContextMiddleware, metrics=metrics, templates=templates)
    templates.include(app.router.routes)
    return app


# The routes are given to the app itself, not with ``include_router``: since FastAPI 0.165 an
# included router is matched lazily (see docs/performance.md). Routes are matched in order, so
# the busiest come first; no two patterns overlap, so the order changes nothing else.
ROUTERS = (
    nodepools.router,
    status.router,
    operations.router,
    clusters.router,
    projects.router,
    health.router,
    metrics_route.router,
)


def api_routes() -> list[BaseRoute]:
    for router in ROUTERS:
        document_identity_headers(router)
    return [route for router in ROUTERS for route in router.routes]
