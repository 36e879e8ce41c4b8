"""ClusterSnapshots keeps at most its capacity, dropping the oldest first."""

from __future__ import annotations

from datetime import UTC, datetime

from cls_core.services.cluster_snapshots import ClusterSnapshots
from cls_core.store import ClusterRecord
from shared_models.aggregation import aggregate_stored

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def cluster(cluster_id: str, rv: str = "1") -> ClusterRecord:
    return ClusterRecord(
        id=cluster_id,
        doc={
            "id": cluster_id,
            "name": cluster_id,
            "generation": 1,
            "spec": {},
            "created_at": "2026-12-03T00:00:00.000Z",
            "updated_at": "2026-12-03T00:00:00.000Z",
            "created_by": "user@example.com",
        },
        rv=rv,
        generation=1,
        status=aggregate_stored(1, {}, None, NOW, required=()),
        project_id="a1b2c3d4-0000-4000-8000-000000000000",
        name=cluster_id,
        platform="gcp",
        seq=0.0,
    )


def test_a_full_store_drops_its_oldest_snapshot() -> None:
    snapshots = ClusterSnapshots(capacity=2)
    for cluster_id in ("a", "b", "c"):
        snapshots.keep(cluster(cluster_id))
    assert len(snapshots) == 2
    assert snapshots.get("a") is None
    assert snapshots.get("c") is not None


def test_keeping_a_newer_snapshot_of_a_cluster_replaces_it_in_place() -> None:
    snapshots = ClusterSnapshots(capacity=2)
    snapshots.keep(cluster("a", rv="1"))
    snapshots.keep(cluster("b"))
    snapshots.keep(cluster("a", rv="2"))
    assert len(snapshots) == 2
    kept = snapshots.get("a")
    assert kept is not None and kept.rv == "2"


def test_a_forgotten_snapshot_is_gone() -> None:
    snapshots = ClusterSnapshots()
    snapshots.keep(cluster("a"))
    snapshots.forget("a")
    snapshots.forget("never-kept")
    assert snapshots.get("a") is None
