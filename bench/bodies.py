"""Request bodies the benchmarks send: the user guide's cluster, nodepool and status report."""

from __future__ import annotations

import json
from typing import Any

from shared_models.specs import MAX_ACCELERATORS, MAX_LABELS, MAX_TAINTS, MAX_ZONES

OWNER = "bench@example.com"
USER_HEADERS = {"X-User-Email": OWNER}
JSON_HEADERS = {**USER_HEADERS, "Content-Type": "application/json"}
# A caller in many projects (their personal one, and shared ones LEAD administers).
MANY = "many-projects@example.com"
MANY_HEADERS = {"X-User-Email": MANY}
LEAD = "lead@example.com"
LEAD_HEADERS = {"X-User-Email": LEAD}


def cluster_body(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "spec": {
            "platform": {
                "type": "gcp",
                "gcp": {"projectID": "bench-project-1", "region": "us-central1"},
            }
        },
    }


def nodepool_spec(node_count: int | str = 3) -> dict[str, Any]:
    return {
        "platform": {
            "type": "gcp",
            "gcp": {
                "machineType": "n1-standard-4",
                "diskSize": 100,
                "diskType": "pd-ssd",
                "zones": ["us-central1-a", "us-central1-b"],
            },
        },
        "autoscaling": {"enabled": True, "minNodes": 2, "maxNodes": 10},
        "nodeCount": node_count,
    }


def nodepool_body(cluster_id: str, name: str) -> dict[str, Any]:
    return {"name": name, "cluster_id": cluster_id, "spec": nodepool_spec()}


def create_template(cluster_id: str) -> str:
    """POST body with ``{n}`` in the name: every request creates a new nodepool."""
    return json.dumps(nodepool_body(cluster_id, "np-{n}"))


def scale_template() -> str:
    """PUT body keeping the name (``{name}``) and changing nodeCount (``{c}``, within 2-10)."""
    body = json.dumps({"name": "{name}", "spec": nodepool_spec(0)})
    return body.replace('"nodeCount": 0', '"nodeCount": {c}')


def status_report(
    controller: str, generation: int, ready: bool, message: str, active: int | str
) -> dict[str, Any]:
    return {
        "controller_name": controller,
        "observed_generation": generation,
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": "2025-10-17T10:30:00Z",
                "reason": "NodesReady" if ready else "Provisioning",
                "message": message,
            }
        ],
        "metadata": {"platform": "gcp", "region": "us-central1", "active_nodes": active},
    }


def status_template() -> str:
    """PUT status body whose message changes on every request, so every report is applied."""
    body = status_report("gcp-nodepool-controller", 1, False, "report {n}", 0)
    return json.dumps(body).replace('"active_nodes": 0', '"active_nodes": {c}')


def largest_gcp_lists() -> dict[str, Any]:
    """Every list and map of a GCP nodepool's platform at its bound, with long keys and values:
    merged into ``spec.platform.gcp``, the largest nodepool the API accepts (in us-central1)."""
    label = "example.com/" + "k" * 60
    return {
        "zones": [f"us-central1-{chr(ord('a') + i)}" for i in range(MAX_ZONES)],
        "labels": {f"{label}{i:03d}": "v" * 63 for i in range(MAX_LABELS)},
        "taints": [
            {"key": f"{label}{i:03d}", "value": "v" * 63, "effect": "NoSchedule"}
            for i in range(MAX_TAINTS)
        ],
        "accelerators": [{"type": f"nvidia-t{i}", "count": 1} for i in range(MAX_ACCELERATORS)],
    }


def largest_nodepool(cluster_id: str, name: str) -> dict[str, Any]:
    body = nodepool_body(cluster_id, name)
    body["spec"]["platform"]["gcp"].update(largest_gcp_lists())
    return body
