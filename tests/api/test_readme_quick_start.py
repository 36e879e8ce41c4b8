"""The README's Quick start, replayed as written: its curl commands are read from README.md, so
the README cannot drift from the API (a scaling example that silently dropped half the spec was
how issue 12 found it)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.api.conftest import SEED_CLUSTER_ID
from tests.api.test_seed_examples import parse_curl
from tests.conftest import gcp_cluster_body
from tests.support.resources import create_cluster

README = Path(__file__).resolve().parents[2] / "README.md"


def quick_start_curls() -> list[str]:
    """The curl commands of the Quick start's shell block, in order, comments dropped: each runs
    from its ``curl`` to the next comment, blank line, assignment or ``curl``."""
    text = README.read_text()
    section = text[text.index("## Quick start") :]
    block = section[section.index("```bash\n") + 8 :]
    block = block[: block.index("```")]
    lines = [re.sub(r"\s+#.*$", "", line) for line in block.splitlines()]
    commands: list[list[str]] = []
    for line in lines:
        if line.startswith("curl "):
            commands.append([line])
        elif commands and line.strip() and not line.startswith(("#", "ID=")):
            commands[-1].append(line)
        elif commands and commands[-1][-1] != "":
            commands[-1].append("")  # the command has ended
    return ["\n".join(command).strip() for command in commands]


async def send(api: httpx.AsyncClient, curl: str, nodepool_id: str = "") -> httpx.Response:
    method, url, headers, body = parse_curl(curl.replace("$ID", nodepool_id))
    path = url.removeprefix("http://localhost:8080")
    return await api.request(method, path, headers=headers, content=body)


def test_the_quick_start_has_its_five_commands() -> None:
    methods = [parse_curl(curl.replace("$ID", "x"))[0] for curl in quick_start_curls()]
    assert methods == ["POST", "GET", "PATCH", "GET", "DELETE"]


async def test_the_quick_start_scales_with_patch_and_keeps_the_rest_of_the_spec(
    api: httpx.AsyncClient,
) -> None:
    await create_cluster(api, gcp_cluster_body("guide", id=SEED_CLUSTER_ID))
    create, status, scale, listing, delete = quick_start_curls()
    created = await send(api, create)
    assert created.status_code == 201, created.text
    nodepool = created.json()
    assert (await send(api, status, nodepool["id"])).status_code == 200
    scaled = await send(api, scale, nodepool["id"])
    assert scaled.status_code == 200, scaled.text
    spec = scaled.json()["spec"]
    assert spec["nodeCount"] == 6
    assert scaled.json()["generation"] == 2
    # Everything the patch did not name is kept: what a PUT of the old example dropped.
    assert spec["autoscaling"] == nodepool["spec"]["autoscaling"]
    assert spec["platform"] == nodepool["spec"]["platform"]
    assert (await send(api, listing)).status_code == 200
    assert (await send(api, delete, nodepool["id"])).status_code == 204


def test_the_scale_example_names_only_node_count() -> None:
    scale = quick_start_curls()[2]
    assert re.search(r"-d '\{\"spec\": \{\"nodeCount\": 6\}\}'", scale), scale
