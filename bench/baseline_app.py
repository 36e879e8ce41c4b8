"""The bare baseline: FastAPI on the API's uvicorn settings, one Redis call per request.

Reads do one ``GET`` of a stored JSON document and return it as is; writes do one ``EVALSHA``
storing the request body. Everything the real API does beyond that (auth, validation, records,
indexes, outbox, status aggregation) is what the ratio to this baseline measures.
Run as ``python -m bench.baseline_app`` with CLS_NAMESPACE / CLS_HOST / CLS_PORT.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Request, Response

from api_service.__main__ import uvicorn_options
from cls_core.store.redis_store import connect_redis
from cls_runtime.logs import configure_logging
from cls_runtime.settings import Settings

WRITE_SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]) return 1"


def doc_key(namespace: str, name: str) -> str:
    return f"{namespace}:bench:doc:{name}"


def create_baseline_app(settings: Settings) -> FastAPI:
    redis = connect_redis(settings.redis_url)
    write = redis.register_script(WRITE_SCRIPT)
    namespace = settings.namespace

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await redis.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/doc/{name}")
    async def read(name: str) -> Response:
        raw = await redis.get(doc_key(namespace, name))
        if raw is None:
            return Response(status_code=404)
        return Response(raw, media_type="application/json")

    @app.post("/doc")
    async def create(request: Request) -> Response:
        body = await request.body()
        await write(keys=[doc_key(namespace, f"new:{uuid.uuid4()}")], args=[body])
        return Response(body, status_code=201, media_type="application/json")

    @app.put("/doc/{name}")
    async def replace(name: str, request: Request) -> Response:
        body = await request.body()
        await write(keys=[doc_key(namespace, name)], args=[body])
        return Response(body, media_type="application/json")

    return app


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(create_baseline_app(settings), **uvicorn_options(settings))


if __name__ == "__main__":
    main()
