"""The registry of controllers: the default one, and a file's, refused with one clear line when it
is not a registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cls_runtime.controllers import RegistryError, load_registry
from shared_models.controllers import DEFAULT_REGISTRY, KINDS
from shared_models.specs import PLATFORMS
from tests.support.registry import EXTRAS_FILE, OPTIONAL, default_entries, entry, write_registry


def test_the_default_registry_requires_each_simulated_controller_for_its_own_resources() -> None:
    for platform in PLATFORMS:
        for kind in KINDS:
            assert DEFAULT_REGISTRY.required_for(kind, platform) == (
                f"{platform}-{kind}-controller",
            )


def test_the_default_registry_allows_a_controller_only_its_own_kind_and_platform() -> None:
    allowed = {
        (name, kind, platform)
        for name in DEFAULT_REGISTRY.names
        for kind in KINDS
        for platform in PLATFORMS
        if DEFAULT_REGISTRY.allows(name, kind, platform)
    }
    assert allowed == {(f"{p}-{k}-controller", k, p) for p in PLATFORMS for k in KINDS}


def test_no_file_is_the_default_registry() -> None:
    assert load_registry(None) == DEFAULT_REGISTRY


def test_a_file_adds_an_optional_controller() -> None:
    registry = load_registry(EXTRAS_FILE)

    assert registry.allows(OPTIONAL, "nodepool", "gcp")
    assert not registry.allows(OPTIONAL, "nodepool", "aws")
    assert registry.required_for("nodepool", "gcp") == ("gcp-nodepool-controller",)


def test_a_controller_of_several_kinds_and_platforms_is_required_for_each(tmp_path: Path) -> None:
    path = write_registry(
        tmp_path / "r.yaml", [entry("everywhere", ["nodepool", "cluster"], ["gcp", "aws"], True)]
    )
    registry = load_registry(path)

    assert registry.required_for("cluster", "aws") == ("everywhere",)
    assert registry.required_for("nodepool", "azure") == ()
    assert registry.reports_on("everywhere", "cluster")


BAD_ENTRIES: list[tuple[str, Any, str]] = [
    (
        "duplicate name",
        [*default_entries(), entry("gcp-nodepool-controller", ["nodepool"], ["aws"], False)],
        "controller 'gcp-nodepool-controller' is listed twice",
    ),
    (
        "unknown key",
        [{**entry("a", ["nodepool"], ["gcp"], True), "requried": True}],
        "controllers[0] (a).requried: unknown key",
    ),
    (
        "unknown kind",
        [entry("a", ["pods"], ["gcp"], True)],
        "controllers[0] (a).kinds[0]: Input should be 'cluster' or 'nodepool' (got 'pods')",
    ),
    (
        "unknown platform",
        [entry("a", ["nodepool"], ["openstack"], True)],
        "controllers[0] (a).platforms[0]: Input should be 'gcp', 'aws' or 'azure'",
    ),
    (
        "required left out",
        [{"name": "a", "kinds": ["nodepool"], "platforms": ["gcp"]}],
        "controllers[0] (a).required: Field required",
    ),
    ("no kinds", [entry("a", [], ["gcp"], True)], "controllers[0] (a).kinds: List should have"),
    (
        "a name that is not a controller name",
        [entry("Not A Name", ["nodepool"], ["gcp"], True)],
        "controllers[0] (Not A Name).name: String should match pattern",
    ),
    ("no controllers", [], "controllers: List should have at least 1 item"),
]


@pytest.mark.parametrize(
    ("entries", "problem"),
    [pytest.param(entries, problem, id=label) for label, entries, problem in BAD_ENTRIES],
)
def test_a_bad_registry_is_refused_in_one_line_naming_the_file_and_the_problem(
    tmp_path: Path, entries: Any, problem: str
) -> None:
    path = write_registry(tmp_path / "controllers.yaml", entries)

    with pytest.raises(RegistryError) as refused:
        load_registry(path)

    message = str(refused.value)
    assert message.startswith(f"CLS_CONTROLLERS_FILE={path}: "), message
    assert problem in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("controllers: [\n", "not valid YAML"),
        ("", "must be a mapping with a 'controllers' list, not nothing"),
        ("- {name: a}\n", "must be a mapping with a 'controllers' list, not list"),
        ("controllers: []\nextra: 1\n", "extra: unknown key"),
    ],
    ids=["not yaml", "empty", "a list", "unknown top-level key"],
)
def test_a_file_that_is_not_a_registry_is_refused_in_one_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "controllers.yaml"
    path.write_text(text)

    with pytest.raises(RegistryError) as refused:
        load_registry(path)

    assert problem in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(RegistryError, match=r"absent\.yaml: cannot be read"):
        load_registry(path)
