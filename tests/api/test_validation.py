"""Every rule of DESIGN.md "Spec validation" and of the cluster spec, one table row each.

A rejected body answers 400 VALIDATION_ERROR naming the offending field (``error.fields``) and
writes nothing; a body on the edge of a rule is accepted. Strict JSON typing: "3" is not a
number and "false" is not a boolean.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from tests.api.conftest import (
    API,
    MERGE_PATCH,
    assert_error,
    aws_cluster_body,
    aws_nodepool_body,
    azure_cluster_body,
    azure_nodepool_body,
    create_nodepool,
    error_fields,
    update_body,
)
from tests.conftest import USER, gcp_cluster_body, seed_nodepool_body
from tests.support.resources import create_cluster

DELETE = object()  # a table value meaning "remove this member"
CLUSTER_ID = "00000000-0000-4000-8000-000000000000"  # replaced by the real cluster's id


def edit(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``body`` with the member at dotted ``path`` set to ``value`` (or removed)."""
    result = copy.deepcopy(body)
    *parents, last = path.split(".")
    node = result
    for part in parents:
        node = node.setdefault(part, {})
    if value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return result


def assert_names(response: httpx.Response, expected: str) -> None:
    """The 400 names ``expected`` (or, with a trailing '*', a field under it)."""
    fields = error_fields(response)
    if expected.endswith("*"):
        assert any(f.startswith(expected[:-1]) for f in fields), fields
    else:
        assert expected in fields, fields


GCP = "spec.platform.gcp"
AUTO = "spec.autoscaling"

# (what is wrong, dotted path, value, field the 400 must name), over the seed's GCP nodepool.
GCP_NODEPOOL_REJECTS: list[tuple[str, str, Any, str]] = [
    ("name missing", "name", DELETE, "name"),
    ("name empty", "name", "", "name"),
    ("name 64 chars", "name", "a" * 64, "name"),
    ("name very long", "name", "a" * 100_000, "name"),
    ("name uppercase", "name", "Prod", "name"),
    ("name leading dash", "name", "-pool", "name"),
    ("name trailing dash", "name", "pool-", "name"),
    ("name underscore", "name", "my_pool", "name"),
    ("name unicode", "name", "ünïcode", "name"),
    ("name emoji", "name", "pool-🚀", "name"),
    ("name trailing newline", "name", "pool\n", "name"),
    ("name number", "name", 12, "name"),
    ("name null", "name", None, "name"),
    ("spec missing", "spec", DELETE, "spec"),
    ("spec not an object", "spec", "gcp", "spec"),
    ("platform missing", "spec.platform", DELETE, "spec.platform"),
    ("platform type unknown", "spec.platform.type", "oracle", "spec.platform.type"),
    ("platform type without its block", "spec.platform.type", "aws", "spec.platform.aws"),
    (
        "second platform block",
        "spec.platform.aws",
        {"instanceType": "m5.large"},
        "spec.platform.aws",
    ),
    ("machineType missing", f"{GCP}.machineType", DELETE, f"{GCP}.machineType"),
    ("machineType with space", f"{GCP}.machineType", "n1 standard", f"{GCP}.machineType"),
    ("nodeCount missing", "spec.nodeCount", DELETE, "spec.nodeCount"),
    ("nodeCount negative", "spec.nodeCount", -1, "spec.nodeCount"),
    ("nodeCount over 1000", "spec.nodeCount", 1001, "spec.nodeCount"),
    ("nodeCount huge", "spec.nodeCount", 2**70, "spec.nodeCount"),
    ("nodeCount string", "spec.nodeCount", "3", "spec.nodeCount"),
    ("nodeCount fraction", "spec.nodeCount", 3.5, "spec.nodeCount"),
    ("nodeCount float", "spec.nodeCount", 3.0, "spec.nodeCount"),
    ("nodeCount boolean", "spec.nodeCount", True, "spec.nodeCount"),
    ("nodeCount null", "spec.nodeCount", None, "spec.nodeCount"),
    ("nodeCount below minNodes", "spec.nodeCount", 1, "spec.nodeCount"),
    ("nodeCount above maxNodes", "spec.nodeCount", 11, "spec.nodeCount"),
    ("minNodes negative", f"{AUTO}.minNodes", -1, f"{AUTO}.minNodes"),
    ("maxNodes over 1000", f"{AUTO}.maxNodes", 1001, f"{AUTO}.maxNodes"),
    ("minNodes above maxNodes", f"{AUTO}.minNodes", 11, f"{AUTO}.minNodes"),
    (
        "minNodes above maxNodes while disabled",
        AUTO,
        {"enabled": False, "minNodes": 5, "maxNodes": 1},
        f"{AUTO}.minNodes",
    ),
    ("enabled without minNodes", f"{AUTO}.minNodes", DELETE, f"{AUTO}.minNodes"),
    ("enabled without maxNodes", f"{AUTO}.maxNodes", DELETE, f"{AUTO}.maxNodes"),
    ("enabled missing", f"{AUTO}.enabled", DELETE, f"{AUTO}.enabled"),
    ("enabled string", f"{AUTO}.enabled", "true", f"{AUTO}.enabled"),
    ("cpu target 0", f"{AUTO}.targetCPUUtilization", 0, f"{AUTO}.targetCPUUtilization"),
    ("cpu target 101", f"{AUTO}.targetCPUUtilization", 101, f"{AUTO}.targetCPUUtilization"),
    ("memory target 0", f"{AUTO}.targetMemoryUtilization", 0, f"{AUTO}.targetMemoryUtilization"),
    (
        "memory target 101",
        f"{AUTO}.targetMemoryUtilization",
        101,
        f"{AUTO}.targetMemoryUtilization",
    ),
    ("delay in words", f"{AUTO}.scaleDownDelay", "10 minutes", f"{AUTO}.scaleDownDelay"),
    ("delay without number", f"{AUTO}.scaleUpDelay", "m", f"{AUTO}.scaleUpDelay"),
    ("delay empty", f"{AUTO}.scaleUpDelay", "", f"{AUTO}.scaleUpDelay"),
    ("delay bare number", f"{AUTO}.scaleUpDelay", "10", f"{AUTO}.scaleUpDelay"),
    ("delay trailing newline", f"{AUTO}.scaleUpDelay", "3m\n", f"{AUTO}.scaleUpDelay"),
    ("delay number", f"{AUTO}.scaleUpDelay", 180, f"{AUTO}.scaleUpDelay"),
    ("diskSize 9", f"{GCP}.diskSize", 9, f"{GCP}.diskSize"),
    ("diskSize 65537", f"{GCP}.diskSize", 65537, f"{GCP}.diskSize"),
    ("diskSize string", f"{GCP}.diskSize", "100", f"{GCP}.diskSize"),
    ("diskType unknown", f"{GCP}.diskType", "ssd", f"{GCP}.diskType"),
    ("zones empty", f"{GCP}.zones", [], f"{GCP}.zones"),
    ("zones repeated", f"{GCP}.zones", ["us-central1-a", "us-central1-a"], f"{GCP}.zones"),
    ("zone empty", f"{GCP}.zones", ["us-central1-a", ""], f"{GCP}.zones[1]"),
    ("zone in another region", f"{GCP}.zones", ["europe-west1-b"], f"{GCP}.zones[0]"),
    ("zone is the region", f"{GCP}.zones", ["us-central1"], f"{GCP}.zones[0]"),
    ("zones not a list", f"{GCP}.zones", "us-central1-a", f"{GCP}.zones"),
    ("preemptible string", f"{GCP}.preemptible", "false", f"{GCP}.preemptible"),
    ("preemptible number", f"{GCP}.preemptible", 0, f"{GCP}.preemptible"),
    (
        "taint effect unknown",
        f"{GCP}.taints",
        [{"key": "a", "effect": "Sometimes"}],
        f"{GCP}.taints[0].effect",
    ),
    ("taint effect missing", f"{GCP}.taints", [{"key": "a"}], f"{GCP}.taints[0].effect"),
    (
        "taint key invalid",
        f"{GCP}.taints",
        [{"key": "bad key", "effect": "NoSchedule"}],
        f"{GCP}.taints[0].key",
    ),
    (
        "taint value invalid",
        f"{GCP}.taints",
        [{"key": "a", "value": "b c", "effect": "NoSchedule"}],
        f"{GCP}.taints[0].value",
    ),
    ("label key with space", f"{GCP}.labels", {"bad key": "x"}, f"{GCP}.labels*"),
    ("label key empty", f"{GCP}.labels", {"": "x"}, f"{GCP}.labels*"),
    ("label key name 64 chars", f"{GCP}.labels", {"k" * 64: "x"}, f"{GCP}.labels*"),
    ("label key bad prefix", f"{GCP}.labels", {"Example.com/team": "x"}, f"{GCP}.labels*"),
    ("label key empty prefix", f"{GCP}.labels", {"/team": "x"}, f"{GCP}.labels*"),
    ("label value 64 chars", f"{GCP}.labels", {"team": "v" * 64}, f"{GCP}.labels.team"),
    ("label value with space", f"{GCP}.labels", {"team": "a b"}, f"{GCP}.labels.team"),
    ("label value trailing newline", f"{GCP}.labels", {"team": "b\n"}, f"{GCP}.labels.team"),
    ("label value leading dash", f"{GCP}.labels", {"team": "-a"}, f"{GCP}.labels.team"),
    ("label value number", f"{GCP}.labels", {"team": 1}, f"{GCP}.labels.team"),
    (
        "accelerator count 0",
        f"{GCP}.accelerators",
        [{"type": "nvidia-tesla-v100", "count": 0}],
        f"{GCP}.accelerators[0].count",
    ),
    (
        "accelerator count string",
        f"{GCP}.accelerators",
        [{"type": "nvidia-tesla-v100", "count": "1"}],
        f"{GCP}.accelerators[0].count",
    ),
    (
        "accelerator type missing",
        f"{GCP}.accelerators",
        [{"count": 1}],
        f"{GCP}.accelerators[0].type",
    ),
    ("unknown top-level field", "generation", 5, "generation"),
    ("unknown spec field", "spec.replicas", 3, "spec.replicas"),
    ("unknown platform field", f"{GCP}.imageType", "COS", f"{GCP}.imageType"),
    ("unknown autoscaling field", f"{AUTO}.mode", "fast", f"{AUTO}.mode"),
    (
        "unknown taint field",
        f"{GCP}.taints",
        [{"key": "a", "effect": "NoSchedule", "ttl": 1}],
        f"{GCP}.taints[0].ttl",
    ),
    ("cluster_id not a UUID", "cluster_id", "not-a-uuid", "cluster_id"),
    ("cluster_id uuid with newline", "cluster_id", f"{CLUSTER_ID}\n", "cluster_id"),
    ("cluster_id number", "cluster_id", 42, "cluster_id"),
]


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [row[1:] for row in GCP_NODEPOOL_REJECTS],
    ids=[row[0] for row in GCP_NODEPOOL_REJECTS],
)
async def test_gcp_nodepool_rule_is_enforced(
    api: httpx.AsyncClient, cluster: dict[str, Any], path: str, value: Any, field: str
) -> None:
    body = edit(seed_nodepool_body(cluster["id"]), path, value)
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert_names(response, field)
    listed = await api.get(f"{API}/nodepools", headers=USER)
    assert listed.json()["total"] == 0  # nothing was written


# Values on the edge of each rule, which must be accepted.
GCP_NODEPOOL_ACCEPTS: list[tuple[str, str, Any]] = [
    ("name 1 char", "name", "a"),
    ("name 63 chars", "name", "a" * 63),
    ("name digits and dashes", "name", "0-pool-9"),
    ("nodeCount at minNodes", "spec.nodeCount", 2),
    ("nodeCount at maxNodes", "spec.nodeCount", 10),
    (
        "autoscaling off, nodeCount 0",
        "spec",
        {"platform": {"type": "gcp", "gcp": {"machineType": "e2-small"}}, "nodeCount": 0},
    ),
    ("autoscaling off, nodeCount 1000", f"{AUTO}", {"enabled": False}),
    ("minNodes 0", f"{AUTO}.minNodes", 0),
    ("maxNodes 1000", f"{AUTO}.maxNodes", 1000),
    ("cpu target 1", f"{AUTO}.targetCPUUtilization", 1),
    ("memory target 100", f"{AUTO}.targetMemoryUtilization", 100),
    ("delay minutes", f"{AUTO}.scaleDownDelay", "10m"),
    ("delay compound", f"{AUTO}.scaleUpDelay", "1h30m15s"),
    ("delay seconds", f"{AUTO}.scaleUpDelay", "45s"),
    ("diskSize 10", f"{GCP}.diskSize", 10),
    ("diskSize 65536", f"{GCP}.diskSize", 65536),
    ("one zone", f"{GCP}.zones", ["us-central1-f"]),
    ("taint NoSchedule", f"{GCP}.taints", [{"key": "a", "effect": "NoSchedule"}]),
    ("taint PreferNoSchedule", f"{GCP}.taints", [{"key": "a", "effect": "PreferNoSchedule"}]),
    ("taint NoExecute", f"{GCP}.taints", [{"key": "a", "value": "b", "effect": "NoExecute"}]),
    ("label with prefix", f"{GCP}.labels", {"example.com/team": "platform"}),
    ("label empty value", f"{GCP}.labels", {"team": ""}),
    ("label 63-char name and value", f"{GCP}.labels", {"k" * 63: "v" * 63}),
    ("label value dots and underscores", f"{GCP}.labels", {"team": "a.b_c-d"}),
    ("accelerator count 1", f"{GCP}.accelerators", [{"type": "nvidia-l4", "count": 1}]),
    ("preemptible true", f"{GCP}.preemptible", True),
    ("cluster_id in capitals", "cluster_id", "UPPER"),
]


@pytest.mark.parametrize(
    ("path", "value"),
    [row[1:] for row in GCP_NODEPOOL_ACCEPTS],
    ids=[row[0] for row in GCP_NODEPOOL_ACCEPTS],
)
async def test_gcp_nodepool_edge_value_is_accepted(
    api: httpx.AsyncClient, cluster: dict[str, Any], path: str, value: Any
) -> None:
    if value == "UPPER":
        value = cluster["id"].upper()
    body = edit(seed_nodepool_body(cluster["id"]), path, value)
    if path == f"{AUTO}":
        body["spec"]["nodeCount"] = 1000
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert response.status_code == 201, response.text
    assert response.json()["cluster_id"] == cluster["id"]


AWS = "spec.platform.aws"
AWS_NODEPOOL_REJECTS: list[tuple[str, str, Any, str]] = [
    ("instanceType missing", f"{AWS}.instanceType", DELETE, f"{AWS}.instanceType"),
    ("volumeSize 9", f"{AWS}.volumeSize", 9, f"{AWS}.volumeSize"),
    ("volumeSize 65537", f"{AWS}.volumeSize", 65537, f"{AWS}.volumeSize"),
    ("volumeType unknown", f"{AWS}.volumeType", "ssd", f"{AWS}.volumeType"),
    (
        "zone in another region",
        f"{AWS}.availabilityZones",
        ["us-east-1a"],
        f"{AWS}.availabilityZones[0]",
    ),
    (
        "zone is the region",
        f"{AWS}.availabilityZones",
        ["us-west-2"],
        f"{AWS}.availabilityZones[0]",
    ),
    (
        "zones repeated",
        f"{AWS}.availabilityZones",
        ["us-west-2a", "us-west-2a"],
        f"{AWS}.availabilityZones",
    ),
    ("zones empty", f"{AWS}.availabilityZones", [], f"{AWS}.availabilityZones"),
    ("spotInstances string", f"{AWS}.spotInstances", "false", f"{AWS}.spotInstances"),
    (
        "taint effect unknown",
        f"{AWS}.taints",
        [{"key": "a", "effect": "Never"}],
        f"{AWS}.taints[0].effect",
    ),
    ("gcp field in aws block", f"{AWS}.machineType", "n1-standard-4", f"{AWS}.machineType"),
    (
        "platform of another cluster",
        "spec.platform",
        {"type": "gcp", "gcp": {"machineType": "n1-standard-4"}},
        "spec.platform.type",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [row[1:] for row in AWS_NODEPOOL_REJECTS],
    ids=[row[0] for row in AWS_NODEPOOL_REJECTS],
)
async def test_aws_nodepool_rule_is_enforced(
    api: httpx.AsyncClient, path: str, value: Any, field: str
) -> None:
    cluster = await create_cluster(api, aws_cluster_body())
    body = edit(aws_nodepool_body(cluster["id"]), path, value)
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert_names(response, field)


AZ = "spec.platform.azure"
AZURE_NODEPOOL_REJECTS: list[tuple[str, str, Any, str]] = [
    ("vmSize missing", f"{AZ}.vmSize", DELETE, f"{AZ}.vmSize"),
    ("osDiskSizeGB 29", f"{AZ}.osDiskSizeGB", 29, f"{AZ}.osDiskSizeGB"),
    ("osDiskSizeGB 4097", f"{AZ}.osDiskSizeGB", 4097, f"{AZ}.osDiskSizeGB"),
    ("osDiskType unknown", f"{AZ}.osDiskType", "Ultra", f"{AZ}.osDiskType"),
    ("zone 4", f"{AZ}.availabilityZones", ["4"], f"{AZ}.availabilityZones[0]"),
    ("zone as number", f"{AZ}.availabilityZones", [1], f"{AZ}.availabilityZones[0]"),
    ("zones repeated", f"{AZ}.availabilityZones", ["1", "1"], f"{AZ}.availabilityZones"),
    ("zones empty", f"{AZ}.availabilityZones", [], f"{AZ}.availabilityZones"),
    ("spotInstances string", f"{AZ}.spotInstances", "false", f"{AZ}.spotInstances"),
    ("label value invalid", f"{AZ}.labels", {"team": "a b"}, f"{AZ}.labels.team"),
]


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [row[1:] for row in AZURE_NODEPOOL_REJECTS],
    ids=[row[0] for row in AZURE_NODEPOOL_REJECTS],
)
async def test_azure_nodepool_rule_is_enforced(
    api: httpx.AsyncClient, path: str, value: Any, field: str
) -> None:
    cluster = await create_cluster(api, azure_cluster_body())
    body = edit(azure_nodepool_body(cluster["id"]), path, value)
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert_names(response, field)


@pytest.mark.parametrize(
    ("cluster_body", "nodepool_body"),
    [
        (aws_cluster_body(), aws_nodepool_body),
        (azure_cluster_body(), azure_nodepool_body),
    ],
    ids=["aws", "azure"],
)
async def test_each_platforms_guide_nodepool_is_accepted_with_labels_and_taints(
    api: httpx.AsyncClient, cluster_body: dict[str, Any], nodepool_body: Any
) -> None:
    cluster = await create_cluster(api, cluster_body)
    body = nodepool_body(cluster["id"])
    platform = body["spec"]["platform"]["type"]
    body["spec"]["platform"][platform]["labels"] = {"team": "platform"}
    body["spec"]["platform"][platform]["taints"] = [{"key": "gpu", "effect": "NoSchedule"}]
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert response.status_code == 201, response.text
    assert response.json()["spec"] == body["spec"]


# ---- cluster specs -----------------------------------------------------------------------

CG = "spec.platform.gcp"
CLUSTER_REJECTS: list[tuple[str, dict[str, Any], str, Any, str]] = [
    ("name missing", gcp_cluster_body(), "name", DELETE, "name"),
    ("name uppercase", gcp_cluster_body(), "name", "Demo", "name"),
    ("name unicode", gcp_cluster_body(), "name", "démo", "name"),
    ("name 64 chars", gcp_cluster_body(), "name", "c" * 64, "name"),
    ("spec missing", gcp_cluster_body(), "spec", DELETE, "spec"),
    (
        "platform type unknown",
        gcp_cluster_body(),
        "spec.platform.type",
        "ibm",
        "spec.platform.type",
    ),
    (
        "platform block missing",
        gcp_cluster_body(),
        "spec.platform.type",
        "aws",
        "spec.platform.aws",
    ),
    (
        "second platform block",
        gcp_cluster_body(),
        "spec.platform.azure",
        {"location": "eastus"},
        "spec.platform.azure",
    ),
    ("gcp projectID missing", gcp_cluster_body(), f"{CG}.projectID", DELETE, f"{CG}.projectID"),
    ("gcp projectID too short", gcp_cluster_body(), f"{CG}.projectID", "ab", f"{CG}.projectID"),
    (
        "gcp projectID uppercase",
        gcp_cluster_body(),
        f"{CG}.projectID",
        "My-Project",
        f"{CG}.projectID",
    ),
    ("gcp region missing", gcp_cluster_body(), f"{CG}.region", DELETE, f"{CG}.region"),
    ("gcp region malformed", gcp_cluster_body(), f"{CG}.region", "uscentral", f"{CG}.region"),
    ("gcp zone in another region", gcp_cluster_body(), f"{CG}.zone", "us-east1-b", f"{CG}.zone"),
    ("gcp unknown field", gcp_cluster_body(), f"{CG}.network", "default", f"{CG}.network"),
    (
        "aws region missing",
        aws_cluster_body(),
        "spec.platform.aws.region",
        DELETE,
        "spec.platform.aws.region",
    ),
    (
        "aws region malformed",
        aws_cluster_body(),
        "spec.platform.aws.region",
        "us-west",
        "spec.platform.aws.region",
    ),
    (
        "azure location missing",
        azure_cluster_body(),
        "spec.platform.azure.location",
        DELETE,
        "spec.platform.azure.location",
    ),
    (
        "azure location with space",
        azure_cluster_body(),
        "spec.platform.azure.location",
        "East US",
        "spec.platform.azure.location",
    ),
    (
        "release version malformed",
        gcp_cluster_body(),
        "spec.release",
        {"version": "v1.30"},
        "spec.release.version",
    ),
    (
        "release channel unknown",
        gcp_cluster_body(),
        "spec.release",
        {"version": "1.30", "channel": "beta"},
        "spec.release.channel",
    ),
    (
        "pod CIDR prefix 33",
        gcp_cluster_body(),
        "spec.networking",
        {"podCIDR": "10.0.0.0/33"},
        "spec.networking.podCIDR",
    ),
    (
        "pod CIDR not a CIDR",
        gcp_cluster_body(),
        "spec.networking",
        {"podCIDR": "ten/8"},
        "spec.networking.podCIDR",
    ),
    (
        "service CIDR host bits",
        gcp_cluster_body(),
        "spec.networking",
        {"serviceCIDR": "10.0.0.1/8"},
        "spec.networking.serviceCIDR",
    ),
    (
        "CIDRs overlap",
        gcp_cluster_body(),
        "spec.networking",
        {"podCIDR": "10.0.0.0/8", "serviceCIDR": "10.1.0.0/16"},
        "spec.networking.serviceCIDR",
    ),
    (
        "dns uppercase",
        gcp_cluster_body(),
        "spec.dns",
        {"baseDomain": "Example.com"},
        "spec.dns.baseDomain",
    ),
    (
        "dns trailing newline",
        gcp_cluster_body(),
        "spec.dns",
        {"baseDomain": "example.com\n"},
        "spec.dns.baseDomain",
    ),
    (
        "dns leading dash",
        gcp_cluster_body(),
        "spec.dns",
        {"baseDomain": "-example.com"},
        "spec.dns.baseDomain",
    ),
    ("unknown spec field", gcp_cluster_body(), "spec.version", "1.30", "spec.version"),
    ("id not a UUID", gcp_cluster_body(), "id", "cluster-1", "id"),
]


@pytest.mark.parametrize(
    ("body", "path", "value", "field"),
    [row[1:] for row in CLUSTER_REJECTS],
    ids=[row[0] for row in CLUSTER_REJECTS],
)
async def test_cluster_rule_is_enforced(
    api: httpx.AsyncClient, body: dict[str, Any], path: str, value: Any, field: str
) -> None:
    response = await api.post(f"{API}/clusters", json=edit(body, path, value), headers=USER)
    assert_names(response, field)
    assert (await api.get(f"{API}/clusters", headers=USER)).json()["total"] == 0


async def test_cluster_with_every_optional_block_is_accepted(api: httpx.AsyncClient) -> None:
    body = gcp_cluster_body()
    body["spec"]["platform"]["gcp"]["zone"] = "us-central1-a"
    body["spec"]["release"] = {"version": "1.30.2", "channel": "stable"}
    body["spec"]["networking"] = {
        "podCIDR": "10.128.0.0/14",
        "serviceCIDR": "172.30.0.0/16",
        "machineCIDR": "10.0.0.0/16",
    }
    body["spec"]["dns"] = {"baseDomain": "clusters.example.com"}
    created = await create_cluster(api, body)
    assert created["spec"] == body["spec"]


async def test_cluster_id_in_capitals_is_stored_lowercase(api: httpx.AsyncClient) -> None:
    chosen = "550E8400-E29B-41D4-A716-446655440000"
    created = await create_cluster(api, gcp_cluster_body(id=chosen))
    assert created["id"] == chosen.lower()
    response = await api.get(f"{API}/clusters/{chosen}", headers=USER)
    assert response.status_code == 200


async def test_cluster_put_cannot_change_the_platform(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = edit(aws_cluster_body("demo"), "name", "demo")
    response = await api.put(f"{API}/clusters/{cluster['id']}", json=body, headers=USER)
    assert_names(response, "spec.platform.type")


async def test_cluster_put_cannot_change_the_region(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = edit(gcp_cluster_body(), f"{CG}.region", "europe-west1")
    response = await api.put(f"{API}/clusters/{cluster['id']}", json=body, headers=USER)
    assert_names(response, CG)


# ---- the same rules on PUT and PATCH ---------------------------------------------------------


async def test_put_applies_the_spec_rules(api: httpx.AsyncClient, nodepool: dict[str, Any]) -> None:
    body = edit(update_body(), "spec.nodeCount", -1)
    response = await api.put(f"{API}/nodepools/{nodepool['id']}", json=body, headers=USER)
    assert_names(response, "spec.nodeCount")


async def test_put_without_a_name_keeps_the_name(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    body = edit(update_body(), "name", DELETE)
    response = await api.put(f"{API}/nodepools/{nodepool['id']}", json=body, headers=USER)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == nodepool["name"]
    assert response.json()["spec"] == body["spec"]


async def test_put_cannot_move_a_nodepool_to_another_cluster(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    other = await create_cluster(api, gcp_cluster_body("other"))
    body = {**update_body(), "cluster_id": other["id"]}
    response = await api.put(f"{API}/nodepools/{nodepool['id']}", json=body, headers=USER)
    assert_names(response, "cluster_id")


async def test_put_may_repeat_the_cluster_id(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    body = {**update_body(), "cluster_id": nodepool["cluster_id"].upper()}
    response = await api.put(f"{API}/nodepools/{nodepool['id']}", json=body, headers=USER)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"spec": {"nodeCount": "4"}}, "spec.nodeCount"),
        ({"spec": {"nodeCount": 50}}, "spec.nodeCount"),
        ({"spec": {"autoscaling": {"minNodes": 20}}}, "spec.autoscaling.minNodes"),
        ({"spec": {"platform": {"gcp": {"zones": ["asia-east1-a"]}}}}, f"{GCP}.zones[0]"),
        ({"spec": {"platform": {"gcp": {"preemptible": "true"}}}}, f"{GCP}.preemptible"),
        ({"spec": {"platform": {"gcp": {"machineType": None}}}}, f"{GCP}.machineType"),
        ({"name": "Bad Name"}, "name"),
        ({"name": None}, "name"),
        ({"status": {"phase": "Ready"}}, "status"),
        ({"spec": {"colour": "blue"}}, "spec.colour"),
        ({"cluster_id": "11111111-1111-4111-8111-111111111111"}, "cluster_id"),
    ],
    ids=[
        "nodeCount string",
        "nodeCount above maxNodes",
        "minNodes above maxNodes",
        "zone outside region",
        "preemptible string",
        "required member removed",
        "name invalid",
        "name removed",
        "status is not writable",
        "unknown spec field",
        "cluster_id changed",
    ],
)
async def test_patch_applies_the_spec_rules_to_the_merged_result(
    api: httpx.AsyncClient, nodepool: dict[str, Any], patch: dict[str, Any], field: str
) -> None:
    response = await api.patch(
        f"{API}/nodepools/{nodepool['id']}", json=patch, headers={**USER, **MERGE_PATCH}
    )
    assert_names(response, field)


async def test_rejected_update_changes_nothing(
    api: httpx.AsyncClient, nodepool: dict[str, Any]
) -> None:
    url = f"{API}/nodepools/{nodepool['id']}"
    await api.put(url, json=edit(update_body(), "spec.nodeCount", -1), headers=USER)
    await api.patch(url, json={"spec": {"nodeCount": "4"}}, headers={**USER, **MERGE_PATCH})
    assert (await api.get(url, headers=USER)).json() == nodepool


# ---- how failures are reported ---------------------------------------------------------------


async def test_every_offending_field_is_named_at_once(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = edit(seed_nodepool_body(cluster["id"]), "name", "Bad")
    body = edit(body, f"{GCP}.diskSize", 1)
    body = edit(body, "spec.extra", True)
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert error_fields(response) == {"name", f"{GCP}.diskSize", "spec.extra"}


async def test_details_join_the_field_messages(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = edit(seed_nodepool_body(cluster["id"]), f"{GCP}.diskSize", 1)
    body = edit(body, "spec.nodeCount", -1)
    error = assert_error(
        await api.post(f"{API}/nodepools", json=body, headers=USER), 400, "VALIDATION_ERROR"
    )
    assert error["message"] == "Validation failed"
    assert error["details"] == "; ".join(f["message"] for f in error["fields"])
    assert all(f["message"].startswith(f["field"]) for f in error["fields"])


async def test_a_name_error_explains_the_rule_in_words(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = edit(seed_nodepool_body(cluster["id"]), "name", "ünïcode")
    details = assert_error(
        await api.post(f"{API}/nodepools", json=body, headers=USER), 400, "VALIDATION_ERROR"
    )["details"]
    assert "'ünïcode'" in details and "DNS-1123 label" in details
    assert "^[a-z0-9]" not in details  # not the regex


async def test_a_very_long_name_is_not_echoed_back(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = edit(seed_nodepool_body(cluster["id"]), "name", "x" * 100_000)
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert_error(response, 400, "VALIDATION_ERROR")
    assert len(response.content) < 1000


async def test_create_in_cluster_rejects_a_different_body_cluster_id(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    other = await create_cluster(api, gcp_cluster_body("other"))
    body = seed_nodepool_body(other["id"])
    response = await api.post(f"{API}/clusters/{cluster['id']}/nodepools", json=body, headers=USER)
    assert_names(response, "cluster_id")


async def test_create_without_any_cluster_id_names_it(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = edit(seed_nodepool_body(cluster["id"]), "cluster_id", DELETE)
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert_names(response, "cluster_id")


async def test_create_in_cluster_needs_no_body_cluster_id(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = edit(seed_nodepool_body(cluster["id"]), "cluster_id", DELETE)
    response = await api.post(f"{API}/clusters/{cluster['id']}/nodepools", json=body, headers=USER)
    assert response.status_code == 201, response.text
    assert response.json()["cluster_id"] == cluster["id"]


async def test_created_nodepool_reads_back_exactly_as_sent(
    api: httpx.AsyncClient, cluster: dict[str, Any]
) -> None:
    body = seed_nodepool_body(cluster["id"])
    created = await create_nodepool(api, cluster["id"], body=body)
    assert created["spec"] == body["spec"]  # no defaults injected, nothing dropped
