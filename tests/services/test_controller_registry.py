"""The registry of controllers in ``StatusService``, the one path HTTP and the queue share: only a
controller listed for a resource's kind and platform stores a report, and Ready waits for every
required one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from cls_core.services.clusters import ClusterService
from cls_core.services.nodepools import NodePoolService
from cls_core.services.status import ApplyResult, Outcome, ReportFor, StatusService
from cls_core.store import NodePoolRecord, RedisStore
from cls_runtime.settings import Settings
from shared_models.status import ControllerReport
from tests.services.conftest import new_cluster, new_nodepool
from tests.support.registry import (
    OPTIONAL,
    default_entries,
    entry,
    with_extra_controllers,
    write_registry,
)

GCP_NODEPOOL = "gcp-nodepool-controller"


def report(
    name: str, generation: int = 1, *, ready: bool = True, error: str | None = None
) -> ControllerReport:
    body: dict[str, Any] = {
        "controller_name": name,
        "observed_generation": generation,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if error is not None:
        body["last_error"] = error
    return ControllerReport.model_validate(body)


@pytest.fixture
async def nodepool(clusters: ClusterService, nodepools: NodePoolService) -> NodePoolRecord:
    """A GCP nodepool: the default registry lets only gcp-nodepool-controller report on it."""
    cluster = await new_cluster(clusters)
    return await new_nodepool(nodepools, cluster.id)


async def stored_names(redis: Redis, settings: Settings, nodepool_id: str) -> set[str]:
    keys = await redis.hkeys(settings.names.controller_reports("nodepool", nodepool_id))
    return {str(key) for key in keys}


async def phase_of(status: StatusService, nodepool_id: str) -> dict[str, Any]:
    record = await status.store.get_nodepool(nodepool_id)
    assert record is not None
    return dict(record.status)


def outcome(result: ApplyResult | Exception) -> Outcome:
    assert isinstance(result, ApplyResult), result
    return result.outcome


# ---- who may report ---------------------------------------------------------------------------


async def test_an_unregistered_controller_is_refused_and_stores_nothing(
    status: StatusService, nodepool: NodePoolRecord, redis: Redis, settings: Settings
) -> None:
    result = await status.apply("nodepool", nodepool.id, report("evil-controller"))

    assert result.outcome is Outcome.UNREGISTERED
    assert await stored_names(redis, settings, nodepool.id) == set()
    after = await status.store.get_nodepool(nodepool.id)
    assert after is not None and after.rv == nodepool.rv


async def test_a_controller_of_another_platform_is_refused(
    status: StatusService, nodepool: NodePoolRecord, redis: Redis, settings: Settings
) -> None:
    result = await status.apply("nodepool", nodepool.id, report("aws-nodepool-controller"))

    assert result.outcome is Outcome.UNREGISTERED
    assert await stored_names(redis, settings, nodepool.id) == set()


async def test_a_controller_of_another_kind_is_refused(
    status: StatusService, nodepool: NodePoolRecord, redis: Redis, settings: Settings
) -> None:
    on_nodepool = await status.apply("nodepool", nodepool.id, report("gcp-cluster-controller"))
    on_cluster = await status.apply("cluster", nodepool.cluster_id, report(GCP_NODEPOOL))

    assert (on_nodepool.outcome, on_cluster.outcome) == (Outcome.UNREGISTERED,) * 2
    assert await stored_names(redis, settings, nodepool.id) == set()
    cluster_reports = settings.names.controller_reports("cluster", nodepool.cluster_id)
    assert await redis.hlen(cluster_reports) == 0


async def test_a_hundred_invented_controllers_store_nothing(
    status: StatusService, nodepool: NodePoolRecord, redis: Redis, settings: Settings
) -> None:
    # The reports a resource holds are bounded by the registry, whoever can publish.
    await status.apply("nodepool", nodepool.id, report(GCP_NODEPOOL))
    items = [ReportFor("nodepool", nodepool.id, report(f"evil-{i}")) for i in range(100)]

    results = await status.apply_many(items)

    assert {outcome(r) for r in results} == {Outcome.UNREGISTERED}
    assert await stored_names(redis, settings, nodepool.id) == {GCP_NODEPOOL}
    assert (await phase_of(status, nodepool.id))["phase"] == "Ready"


# ---- what Ready waits for ---------------------------------------------------------------------


@with_extra_controllers
async def test_ready_waits_for_the_required_controller_and_names_it(
    status: StatusService, nodepool: NodePoolRecord
) -> None:
    await status.apply("nodepool", nodepool.id, report(OPTIONAL))

    waiting = await phase_of(status, nodepool.id)
    assert (waiting["phase"], waiting["reason"]) == ("Progressing", "WaitingForControllers")
    assert (
        waiting["message"]
        == f"1 of 2 controllers ready at generation 1; waiting for {GCP_NODEPOOL}"
    )

    await status.apply("nodepool", nodepool.id, report(GCP_NODEPOOL))
    assert (await phase_of(status, nodepool.id))["phase"] == "Ready"


async def test_a_new_nodepool_names_the_controller_it_waits_for(nodepool: NodePoolRecord) -> None:
    assert nodepool.status["phase"] == "Pending"
    assert nodepool.status["message"].endswith(f"; waiting for {GCP_NODEPOOL}")


@with_extra_controllers
async def test_an_optional_controller_in_error_degrades_as_before(
    status: StatusService, nodepool: NodePoolRecord
) -> None:
    await status.apply("nodepool", nodepool.id, report(GCP_NODEPOOL))
    await status.apply("nodepool", nodepool.id, report(OPTIONAL, ready=False, error="quota"))

    degraded = await phase_of(status, nodepool.id)
    assert (degraded["phase"], degraded["health"]) == ("Progressing", "Degraded")
    assert degraded["message"].endswith(f"failing: {OPTIONAL}: quota")


@pytest.fixture
def two_required(tmp_path: Path, settings: Settings) -> Settings:
    """The settings with a registry where a GCP nodepool needs a network controller as well."""
    entries = [*default_entries(), entry("gcp-network", ["nodepool"], ["gcp"], True)]
    path = write_registry(tmp_path / "controllers.yaml", entries)
    return Settings(
        namespace=settings.namespace,
        redis_url=settings.redis_url,
        amqp_url=settings.amqp_url,
        controllers_file=path,
    )


async def test_ready_waits_for_every_required_controller_of_a_file(
    store: RedisStore, two_required: Settings, clusters: ClusterService
) -> None:
    nodepools = NodePoolService(store, two_required)
    created = await new_nodepool(nodepools, (await new_cluster(clusters)).id)
    status = StatusService(store, two_required)

    await status.apply("nodepool", created.id, report(GCP_NODEPOOL))
    waiting = await phase_of(status, created.id)
    assert (waiting["phase"], waiting["message"]) == (
        "Progressing",
        "1 of 2 controllers ready at generation 1; waiting for gcp-network",
    )

    await status.apply("nodepool", created.id, report("gcp-network"))
    assert (await phase_of(status, created.id))["phase"] == "Ready"


async def test_a_report_kept_from_before_its_controller_left_the_registry_no_longer_counts(
    store: RedisStore, settings: Settings, nodepool: NodePoolRecord, tmp_path: Path
) -> None:
    # Stored while the registry still listed the guest (and it was failing) ...
    extras = write_registry(
        tmp_path / "with-guest.yaml",
        [*default_entries(), entry("guest", ["nodepool"], ["gcp"], False)],
    )
    before = Settings(
        namespace=settings.namespace, redis_url=settings.redis_url, controllers_file=extras
    )
    await StatusService(store, before).apply("nodepool", nodepool.id, report("guest", error="x"))

    # ... then the registry is the default one again: only the registered controller counts.
    status = StatusService(store, settings)
    await status.apply("nodepool", nodepool.id, report(GCP_NODEPOOL))

    assert (await phase_of(status, nodepool.id))["phase"] == "Ready"
