"""Move the clusters and nodepools stored before projects into their creators' personal
projects (cls_core/services/migrate_projects.py). Run it once, with the API stopped, before the
first start of a release with projects; running it again is harmless.

    python scripts/migrate_to_projects.py        # CLS_REDIS_URL and CLS_NAMESPACE as the services
"""

from __future__ import annotations

import asyncio
import sys

from cls_core.services.migrate_projects import migrate_to_projects
from cls_core.store.redis_store import connect_redis
from cls_runtime.settings import Settings


async def main() -> int:
    settings = Settings()
    redis = connect_redis(settings.redis_url)
    try:
        report = await migrate_to_projects(redis, settings)
    finally:
        await redis.aclose()
    moved = report.moved
    print(
        f"namespace {settings.namespace}: moved {moved['cluster']} clusters and "
        f"{moved['nodepool']} nodepools into personal projects; {report.already} already there"
    )
    for what in report.raced:
        print(f"changed while being moved, run again: {what}", file=sys.stderr)
    return 1 if report.raced else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
