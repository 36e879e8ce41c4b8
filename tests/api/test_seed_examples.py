"""Every example of the user guide (seed/nodepools-user-guide.md), replayed as written.

The curl commands are copied verbatim from the guide and replayed by parsing them (method,
headers, body, URL), so a drift between the guide and the API shows up here. The guide's
nodepool id (123e4567-...) is server-chosen in reality: it is replaced by the id the create
returned. The guide's cluster id is created first with POST /clusters and a chosen id.
"""

from __future__ import annotations

import shlex
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest

from tests.api.conftest import (
    API,
    JSON,
    SEED_CLUSTER_ID,
    assert_error,
    aws_cluster_body,
    azure_cluster_body,
)
from tests.conftest import USER, controller_headers, gcp_cluster_body
from tests.support.deletion import confirm_deletion
from tests.support.resources import create_cluster

SEED_NODEPOOL_ID = "123e4567-e89b-12d3-a456-426614174000"
RESOURCE_FIELDS = {
    "id",
    "name",
    "cluster_id",
    "generation",
    "resource_version",
    "spec",
    "status",
    "created_at",
    "updated_at",
    "created_by",
}

# ---- the guide's text, verbatim -------------------------------------------------------------

CREATE_IN_CLUSTER_BODY = """{
  "name": "worker-pool-1",
  "cluster_id": "550e8400-e29b-41d4-a716-446655440000",
  "spec": {
    "platform": {
      "type": "gcp",
      "gcp": {
        "machineType": "n1-standard-4",
        "diskSize": 100,
        "diskType": "pd-ssd",
        "zones": ["us-central1-a", "us-central1-b"],
        "preemptible": false
      }
    },
    "autoscaling": {
      "enabled": true,
      "minNodes": 1,
      "maxNodes": 10
    },
    "nodeCount": 3
  }
}"""

LIST_CURL = r"""curl -H "X-User-Email: user@example.com" \
  "http://localhost:8080/api/v1/nodepools?limit=10&status=Ready"
"""

UPDATE_BODY = """{
  "name": "worker-pool-1-updated",
  "spec": {
    "platform": {
      "type": "gcp",
      "gcp": {
        "machineType": "n1-standard-8",
        "diskSize": 200
      }
    },
    "nodeCount": 5
  }
}"""

STATUS_REPORT_BODY = """{
  "controller_name": "gcp-nodepool-controller",
  "observed_generation": 2,
  "conditions": [
    {
      "type": "Ready",
      "status": "True",
      "lastTransitionTime": "2025-10-17T10:30:00Z",
      "reason": "NodesReady",
      "message": "All nodes are ready and healthy"
    }
  ],
  "metadata": {
    "platform": "gcp",
    "region": "us-central1",
    "active_nodes": 5,
    "desired_nodes": 5,
    "node_ages": "2h30m,1h45m,1h15m,45m,30m"
  }
}"""

GCP_BLOCK = """{
  "spec": {
    "platform": {
      "type": "gcp",
      "gcp": {
        "machineType": "n1-standard-4",
        "diskSize": 100,
        "diskType": "pd-ssd",
        "zones": ["us-central1-a", "us-central1-b"],
        "preemptible": false,
        "accelerators": [
          {
            "type": "nvidia-tesla-v100",
            "count": 1
          }
        ],
        "labels": {
          "environment": "production",
          "team": "platform"
        },
        "taints": [
          {
            "key": "workload-type",
            "value": "gpu",
            "effect": "NoSchedule"
          }
        ]
      }
    }
  }
}"""

AWS_BLOCK = r"""{
  "spec": {
    "platform": {
      "type": "aws",
      "aws": {
        "instanceType": "m5.xlarge",
        "volumeSize": 100,
        "volumeType": "gp3",
        "availabilityZones": ["us-west-2a", "us-west-2b"],
        "spotInstances": false,
        "userData": "#!/bin/bash\necho 'Custom initialization'"
      }
    }
  }
}"""

AZURE_BLOCK = """{
  "spec": {
    "platform": {
      "type": "azure",
      "azure": {
        "vmSize": "Standard_D4s_v3",
        "osDiskSizeGB": 100,
        "osDiskType": "Premium_LRS",
        "availabilityZones": ["1", "2"],
        "spotInstances": false
      }
    }
  }
}"""

AUTOSCALING_BLOCK = """{
  "spec": {
    "autoscaling": {
      "enabled": true,
      "minNodes": 1,
      "maxNodes": 20,
      "targetCPUUtilization": 70,
      "targetMemoryUtilization": 80,
      "scaleDownDelay": "10m",
      "scaleUpDelay": "3m"
    }
  }
}"""

WORKFLOW_CREATE_CURL = r"""curl -X POST "http://localhost:8080/api/v1/nodepools" \
  -H "Content-Type: application/json" \
  -H "X-User-Email: user@example.com" \
  -d '{
    "name": "production-workers",
    "cluster_id": "550e8400-e29b-41d4-a716-446655440000",
    "spec": {
      "platform": {
        "type": "gcp",
        "gcp": {
          "machineType": "n1-standard-4",
          "diskSize": 100,
          "diskType": "pd-ssd",
          "zones": ["us-central1-a", "us-central1-b"]
        }
      },
      "autoscaling": {
        "enabled": true,
        "minNodes": 2,
        "maxNodes": 10
      },
      "nodeCount": 3
    }
  }'
"""

WORKFLOW_STATUS_CURL = r"""# Check nodepool status
curl -H "X-User-Email: user@example.com" \
  "http://localhost:8080/api/v1/nodepools/123e4567-e89b-12d3-a456-426614174000/status"
"""

WORKFLOW_SCALE_CURL = r"""curl -X PUT "http://localhost:8080/api/v1/nodepools/123e4567-e89b-12d3-a456-426614174000" \
  -H "Content-Type: application/json" \
  -H "X-User-Email: user@example.com" \
  -d '{
    "name": "production-workers",
    "spec": {
      "platform": {
        "type": "gcp",
        "gcp": {
          "machineType": "n1-standard-4",
          "diskSize": 100
        }
      },
      "nodeCount": 6
    }
  }'
"""  # noqa: E501 - verbatim from the guide

ERROR_400 = {
    "error": {
        "code": "VALIDATION_ERROR",
        "message": "Validation failed",
        "details": "nodepool name is required",
    }
}
ERROR_404 = {"error": {"code": "NOT_FOUND", "message": "NodePool not found", "details": ""}}
ERROR_409_MESSAGE = "NodePool with name 'production-workers' already exists in cluster"

# ---- replaying curl -------------------------------------------------------------------------


def parse_curl(text: str) -> tuple[str, str, dict[str, str], bytes | None]:
    """(method, URL, headers, body) of one curl command line of the guide."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    words = shlex.split("\n".join(lines).replace("\\\n", " "))
    assert words[0] == "curl", words
    method, url, headers, body = "GET", "", {}, None
    args = iter(words[1:])
    for word in args:
        if word == "-X":
            method = next(args)
        elif word == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            body = next(args).encode()
            method = "POST" if method == "GET" else method
        else:
            url = word
    return method, url, headers, body


async def replay(
    client: httpx.AsyncClient, curl: str, nodepool_id: str = SEED_NODEPOOL_ID
) -> httpx.Response:
    method, url, headers, body = parse_curl(curl)
    path = url.removeprefix("http://localhost:8080").replace(SEED_NODEPOOL_ID, nodepool_id)
    return await client.request(method, path, headers=headers, content=body)


def nodepool_body(spec_json: str, name: str, node_count: int = 3) -> dict[str, Any]:
    """A create body around one of the guide's spec fragments."""
    spec = orjson.loads(spec_json)["spec"]
    spec.setdefault("nodeCount", node_count)
    return {"name": name, "cluster_id": SEED_CLUSTER_ID, "spec": spec}


def assert_resource_shape(body: dict[str, Any]) -> None:
    assert set(body) == RESOURCE_FIELDS, body
    for stamp in ("created_at", "updated_at"):
        assert body[stamp].endswith("Z")
        datetime.fromisoformat(body[stamp])
    assert body["created_by"] == "user@example.com"


async def seed_cluster(api: httpx.AsyncClient, cluster: dict[str, Any] | None = None) -> None:
    await create_cluster(api, cluster or gcp_cluster_body("seed", id=SEED_CLUSTER_ID))


async def workflow_create(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await replay(api, WORKFLOW_CREATE_CURL)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# ---- 1. create --------------------------------------------------------------------------------


async def test_create_in_cluster_answers_the_guides_response(api: httpx.AsyncClient) -> None:
    await seed_cluster(api)
    response = await api.post(
        f"{API}/clusters/{SEED_CLUSTER_ID}/nodepools",
        content=CREATE_IN_CLUSTER_BODY,
        headers={**USER, **JSON},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert_resource_shape(body)
    assert body["name"] == "worker-pool-1"
    assert body["cluster_id"] == SEED_CLUSTER_ID
    assert body["generation"] == 1
    assert body["spec"] == orjson.loads(CREATE_IN_CLUSTER_BODY)["spec"]
    assert response.headers["ETag"] == f'"{body["resource_version"]}"'
    assert response.headers["Location"] == f"{API}/nodepools/{body['id']}"


async def test_workflow_create_curl_answers_201(api: httpx.AsyncClient) -> None:
    await seed_cluster(api)
    body = await workflow_create(api)
    assert_resource_shape(body)
    assert body["name"] == "production-workers"
    assert body["status"]["phase"] == "Pending"
    assert body["status"]["reason"] == "NoControllers"


@pytest.mark.parametrize(
    ("cluster", "block"),
    [
        (gcp_cluster_body("seed", id=SEED_CLUSTER_ID), GCP_BLOCK),
        (aws_cluster_body("seed", id=SEED_CLUSTER_ID), AWS_BLOCK),
        (azure_cluster_body("seed", id=SEED_CLUSTER_ID), AZURE_BLOCK),
    ],
    ids=["gcp", "aws", "azure"],
)
async def test_platform_block_of_the_guide_is_accepted_and_kept(
    api: httpx.AsyncClient, cluster: dict[str, Any], block: str
) -> None:
    await seed_cluster(api, cluster)
    body = nodepool_body(block, "platform-pool")
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert response.status_code == 201, response.text
    assert response.json()["spec"] == body["spec"]


async def test_autoscaling_block_of_the_guide_is_accepted(api: httpx.AsyncClient) -> None:
    await seed_cluster(api)
    spec = orjson.loads(AUTOSCALING_BLOCK)["spec"]
    spec["platform"] = {"type": "gcp", "gcp": {"machineType": "n1-standard-4"}}
    body = {"name": "autoscaled", "cluster_id": SEED_CLUSTER_ID, "spec": {**spec, "nodeCount": 3}}
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["autoscaling"] == spec["autoscaling"]


# ---- 2. list, 3. get ----------------------------------------------------------------------


async def test_list_curl_answers_the_guides_envelope(api: httpx.AsyncClient) -> None:
    await seed_cluster(api)
    await workflow_create(api)
    response = await replay(api, LIST_CURL)
    assert response.status_code == 200, response.text
    # Nothing is Ready before a controller reports: the filter is applied.
    assert response.json() == {"nodepools": [], "total": 0, "limit": 10, "offset": 0}


async def test_list_curl_finds_a_nodepool_once_its_controller_reports_ready(
    api: httpx.AsyncClient,
) -> None:
    await seed_cluster(api)
    created = await workflow_create(api)
    scaled = await replay(api, WORKFLOW_SCALE_CURL, created["id"])
    assert scaled.json()["generation"] == 2
    report = await api.put(
        f"{API}/nodepools/{created['id']}/status",
        content=STATUS_REPORT_BODY,
        headers={**controller_headers(), **JSON},
    )
    assert report.status_code == 200, report.text
    response = await replay(api, LIST_CURL)
    body = response.json()
    assert (body["total"], body["limit"], body["offset"]) == (1, 10, 0)
    [item] = body["nodepools"]
    assert_resource_shape(item)
    assert item["id"] == created["id"]
    assert item["status"]["phase"] == "Ready"


async def test_get_answers_the_guides_fields_and_etag(api: httpx.AsyncClient) -> None:
    await seed_cluster(api)
    created = await workflow_create(api)
    response = await api.get(f"{API}/nodepools/{created['id']}", headers=USER)
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["ETag"] == f'"{created["resource_version"]}"'


# ---- 4. update, scale -------------------------------------------------------------------


async def test_update_body_renames_and_increments_generation(api: httpx.AsyncClient) -> None:
    await seed_cluster(api)
    created = await workflow_create(api)
    response = await api.put(
        f"{API}/nodepools/{created['id']}",
        content=UPDATE_BODY,
        headers={**USER, **JSON},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert_resource_shape(body)
    assert body["name"] == "worker-pool-1-updated"
    assert body["generation"] == 2
    assert body["spec"] == orjson.loads(UPDATE_BODY)["spec"]
    assert body["resource_version"] != created["resource_version"]
    assert body["created_at"] == created["created_at"]


async def test_scale_curl_sets_node_count_and_increments_generation(
    api: httpx.AsyncClient,
) -> None:
    await seed_cluster(api)
    created = await workflow_create(api)
    response = await replay(api, WORKFLOW_SCALE_CURL, created["id"])
    assert response.status_code == 200, response.text
    assert response.json()["spec"]["nodeCount"] == 6
    assert response.json()["generation"] == 2


# ---- status ----------------------------------------------------------------------------------


async def test_status_curl_lists_the_controller_report(api: httpx.AsyncClient) -> None:
    await seed_cluster(api)
    created = await workflow_create(api)
    await replay(api, WORKFLOW_SCALE_CURL, created["id"])
    await api.put(
        f"{API}/nodepools/{created['id']}/status",
        content=STATUS_REPORT_BODY,
        headers={**controller_headers(), **JSON},
    )
    response = await replay(api, WORKFLOW_STATUS_CURL, created["id"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["nodepool_id"] == created["id"]
    [report] = body["controller_status"]
    sent = orjson.loads(STATUS_REPORT_BODY)
    assert report["controller_name"] == sent["controller_name"]
    assert report["observed_generation"] == 2
    assert report["metadata"] == sent["metadata"]
    assert "updated_at" in report


# ---- 5. delete -------------------------------------------------------------------------------


async def test_delete_answers_204_and_the_nodepool_is_gone(api: httpx.AsyncClient) -> None:
    await seed_cluster(api)
    created = await workflow_create(api)
    response = await api.delete(f"{API}/nodepools/{created['id']}", headers=USER)
    assert response.status_code == 204
    assert response.content == b""
    await confirm_deletion(api, f"nodepools/{created['id']}")
    gone = await api.get(f"{API}/nodepools/{created['id']}", headers=USER)
    assert gone.json() == ERROR_404


# ---- the three error responses -------------------------------------------------------------


async def test_missing_name_answers_the_guides_400(api: httpx.AsyncClient) -> None:
    await seed_cluster(api)
    body = orjson.loads(parse_curl(WORKFLOW_CREATE_CURL)[3] or b"")
    del body["name"]
    response = await api.post(f"{API}/nodepools", json=body, headers=USER)
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert {k: error[k] for k in ("code", "message", "details")} == ERROR_400["error"]
    assert error["fields"] == [{"field": "name", "message": "nodepool name is required"}]


async def test_unknown_nodepool_answers_the_guides_404(api: httpx.AsyncClient) -> None:
    response = await replay(api, WORKFLOW_STATUS_CURL)
    assert response.status_code == 404
    assert response.json() == ERROR_404
    response = await api.get(f"{API}/nodepools/{SEED_NODEPOOL_ID}", headers=USER)
    assert response.json() == ERROR_404


async def test_duplicate_name_answers_the_guides_409_naming_the_existing_id(
    api: httpx.AsyncClient,
) -> None:
    await seed_cluster(api)
    first = await workflow_create(api)
    response = await replay(api, WORKFLOW_CREATE_CURL)
    error = assert_error(response, 409, "CONFLICT")
    assert error["message"] == ERROR_409_MESSAGE
    assert error["details"] == f"existing nodepool id: {first['id']}"


# ---- the whole guide against the real service (what `make run` starts) ---------------------


async def test_guide_workflow_works_against_the_running_service(running_api: str) -> None:
    async with httpx.AsyncClient(base_url=running_api, timeout=10) as client:
        await seed_cluster(client)
        created = await workflow_create(client)
        nodepool_id = created["id"]
        assert (await replay(client, WORKFLOW_STATUS_CURL, nodepool_id)).status_code == 200
        scaled = await replay(client, WORKFLOW_SCALE_CURL, nodepool_id)
        assert (scaled.status_code, scaled.json()["generation"]) == (200, 2)
        listed = await replay(client, LIST_CURL)
        assert listed.json() == {"nodepools": [], "total": 0, "limit": 10, "offset": 0}
        conflict = await replay(client, WORKFLOW_CREATE_CURL)
        assert conflict.status_code == 409
        deleted = await client.delete(f"{API}/nodepools/{nodepool_id}", headers=USER)
        assert deleted.status_code == 204
        await confirm_deletion(client, f"nodepools/{nodepool_id}")
        assert (await client.get(f"{API}/nodepools/{nodepool_id}", headers=USER)).json() == (
            ERROR_404
        )
