"""Names of every Redis key, exchange and queue, all under one namespace.

Several stacks (or test runs) share one Redis and one broker by using different namespaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["cluster", "nodepool"]

# Wildcard used in index keys for "any value of this filter".
ANY = "*"


@dataclass(frozen=True)
class Names:
    namespace: str
    # About how many changes a project's watch stream keeps (CLS_WATCH_HISTORY): a resume token
    # older than that answers 410. Here because every write of a view appends to that stream.
    watch_history: int = 10_000

    # ---- RabbitMQ -------------------------------------------------------------------------
    @property
    def events_exchange(self) -> str:
        return f"{self.namespace}.events"

    @property
    def status_exchange(self) -> str:
        return f"{self.namespace}.status"

    @property
    def status_queue(self) -> str:
        return f"{self.namespace}.status.ingest"

    @property
    def status_dead_exchange(self) -> str:
        return f"{self.namespace}.status.dlx"

    @property
    def status_dead_queue(self) -> str:
        return f"{self.namespace}.status.dead"

    def controller_queue(self, controller_name: str) -> str:
        return f"{self.namespace}.controller.{controller_name}"

    # ---- Redis: records -------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    def record(self, kind: Kind, resource_id: str) -> str:
        """Hash holding one resource: its document, versions, owner and aggregated status."""
        return self._key(kind, resource_id)

    def controller_reports(self, kind: Kind, resource_id: str) -> str:
        """Hash controller_name -> that controller's last report (JSON)."""
        return self._key(kind, resource_id, "controllers")

    def watch_stream(self, project_id: str) -> str:
        """Stream of the changes of a project's clusters and nodepools (ADDED, MODIFIED,
        DELETED, each with the resource's view), appended by the write that makes the change;
        trimmed to about ``watch_history`` entries."""
        return self._key("watch", project_id)

    def watchers(self, email: str) -> str:
        """Sorted set of a caller's open watch connections (score: when its lease ends)."""
        return self._key("watchers", email)

    def view(self, kind: Kind, resource_id: str) -> str:
        """String holding one resource as the API returns it (JSON), written with every change of
        its record: reads send it as stored, and a page reads its views with one MGET."""
        return self._key("view", kind, resource_id)

    def operation(self, operation_id: str) -> str:
        """Hash holding one operation: ``doc`` (what the change was, JSON) and, once it has
        ended, ``state``, ``finished_at``, ``progress``, ``error``, ``superseded_by``."""
        return self._key("op", operation_id)

    def resource_operations(self, kind: Kind, resource_id: str) -> str:
        """Sorted set of a resource's operation ids by creation time (its bounded history)."""
        return self._key("ops", kind, resource_id)

    # ---- Redis: indexes -------------------------------------------------------------------
    def cluster_names(self, project_id: str) -> str:
        """Hash cluster name -> id, per project (names are unique in a project)."""
        return self._key("names", "cluster", project_id)

    def nodepool_names(self, cluster_id: str) -> str:
        """Hash nodepool name -> id, per cluster (names are unique per cluster)."""
        return self._key("names", "nodepool", cluster_id)

    def cluster_index(self, project_id: str, platform: str, phase: str) -> str:
        """Sorted set of a project's cluster ids by creation time; ANY stands for an unfiltered
        dimension."""
        return self._key("idx", "cluster", project_id, platform, phase)

    def nodepool_index(self, project_id: str, cluster_id: str, phase: str, health: str) -> str:
        """Sorted set of a project's nodepool ids by creation time; ANY stands for an unfiltered
        dimension."""
        return self._key("idx", "nodepool", project_id, cluster_id, phase, health)

    def nodepool_phase_index(self, phase: str) -> str:
        """Sorted set of every nodepool id in ``phase``, whoever owns it (its ZCARD is a metric)."""
        return self._key("idx", "phase", "nodepool", phase)

    def cluster_nodepools(self, cluster_id: str) -> str:
        """Sorted set of the nodepool ids of one cluster, whoever owns them."""
        return self._key("cluster", cluster_id, "nodepools")

    @property
    def retired_cluster_ids(self) -> str:
        """Hash cluster id -> when it was deleted: ids are never used again (tombstones), so no
        report or event meant for a deleted cluster can reach a new one."""
        return self._key("retired", "cluster")

    def tombstone(self, kind: Kind, resource_id: str) -> str:
        """Hash left by a purged resource (deleted_at, generation, forced_by/reason/forced_at
        when forced), expiring after ``tombstone_retention``: its id is never used again."""
        return self._key("tombstone", kind, resource_id)

    @property
    def deletion_due(self) -> str:
        """Sorted set '<kind>:<id>' -> unix time its deletion times out if not confirmed."""
        return self._key("deletion", "due")

    @property
    def deleting_clusters(self) -> str:
        """Hash cluster id -> JSON of its deletion (forced_by, reason; {} unforced): the
        clusters whose deletion the cascade job still has to finish (survives a restart)."""
        return self._key("deletion", "clusters")

    def idempotency(self, caller: str, key: str) -> str:
        """A caller's ``Idempotency-Key`` (keys belong to the email that sent them)."""
        return self._key("idem", caller, key)

    # ---- Redis: projects ------------------------------------------------------------------
    def project(self, project_id: str) -> str:
        """Hash holding one project: its document, resource_version, name and creator."""
        return self._key("project", project_id)

    def project_members(self, project_id: str) -> str:
        """Hash email -> JSON {role, added_by, added_at}: the project's members."""
        return self._key("project", project_id, "members")

    def project_groups(self, project_id: str) -> str:
        """Hash group -> JSON {role, added_by, added_at}: the gateway groups granted a role."""
        return self._key("project", project_id, "groups")

    def project_operations(self, project_id: str) -> str:
        """Stream of the project's operations (membership changes, transfers), capped."""
        return self._key("project", project_id, "operations")

    def project_clusters(self, project_id: str) -> str:
        """Sorted set of the project's cluster ids (a project with clusters is not deleted)."""
        return self.cluster_index(project_id, ANY, ANY)

    def project_names(self, creator: str) -> str:
        """Hash project name -> id, per creator (names are unique per creator)."""
        return self._key("names", "project", creator)

    def user_projects(self, email: str) -> str:
        """Sorted set of the ids of the projects ``email`` is a member of, by when they joined."""
        return self._key("member", "user", email)

    def group_projects(self, group: str) -> str:
        """Sorted set of the ids of the projects that grant ``group`` a role."""
        return self._key("member", "group", group)

    # ---- Redis: events and coordination ---------------------------------------------------
    @property
    def outbox(self) -> str:
        """Stream of events committed with their change and not yet confirmed by the broker."""
        return self._key("outbox")

    @property
    def outbox_dead(self) -> str:
        """Stream of outbox entries the relay could not read as an event (kept for an operator)."""
        return self._key("outbox", "dead")

    @property
    def reconcile_due(self) -> str:
        """Sorted set '<kind>:<id>' -> unix time at which it is next due for reconciliation."""
        return self._key("reconcile", "due")

    def lock(self, name: str) -> str:
        return self._key("lock", name)

    def metric(self, name: str) -> str:
        return self._key("metric", name)
