"""Clusters a nodepool create has recently validated against, so the next create can skip the read.

A create needs its cluster's spec (platform, region) to validate the nodepool, and that read was
a Redis round trip of its own before the transaction: about a tenth of a create's CPU. Clusters
change rarely, so a create validates against the snapshot held here and its transaction checks
that the cluster's resource version is still the snapshot's. Any write to the cluster (spec,
status, deletion), on any replica, changes or removes that version: the transaction then writes
nothing, and the create reads the cluster afresh and runs again. A snapshot can be stale, never
wrong where it matters.
"""

from __future__ import annotations

from cls_core.store import ClusterRecord

# A snapshot is a few KB: this bounds the memory to a few MB whatever the number of clusters.
MAX_SNAPSHOTS = 2048


class ClusterSnapshots:
    def __init__(self, capacity: int = MAX_SNAPSHOTS) -> None:
        self._capacity = capacity
        self._by_id: dict[str, ClusterRecord] = {}

    def get(self, cluster_id: str) -> ClusterRecord | None:
        return self._by_id.get(cluster_id)

    def keep(self, cluster: ClusterRecord) -> None:
        if cluster.id not in self._by_id and len(self._by_id) >= self._capacity:
            del self._by_id[next(iter(self._by_id))]  # the oldest kept: dicts keep their order
        self._by_id[cluster.id] = cluster

    def forget(self, cluster_id: str) -> None:
        self._by_id.pop(cluster_id, None)

    def __len__(self) -> int:
        return len(self._by_id)
