"""docker-compose.yml and the Dockerfile agree with the code (no Docker engine needed), and the
development controller tokens with `make run` and the README."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cls_runtime.broker_users import password_matches
from cls_runtime.settings import Settings, parse_controller_tokens
from reconciler_stub.catalog import ALL_CONTROLLERS, select_controllers

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
README = ROOT / "README.md"
RUN_STACK = ROOT / "scripts" / "run_stack.py"
# A row of the README's table of development tokens: | `name` | `token` |
README_TOKEN_ROW = re.compile(
    r"^\| `([a-z]+-[a-z]+-controller)` \| `(dev-[a-z-]+-token)` \|$", re.MULTILINE
)
PACKAGES = {"api_service", "event_jobs", "status_ingester", "reconciler_stub"}
# What every process of the stack must agree on to be one stack.
SHARED_VARS = ("CLS_REDIS_URL", "CLS_AMQP_URL", "CLS_NAMESPACE")
CLS_VAR = re.compile(r"^CLS_[A-Z0-9_]+$")


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    found = load_compose().get("services")
    assert isinstance(found, dict) and found, "compose file defines no services"
    return found


def project_services() -> dict[str, dict[str, Any]]:
    """Services that run the image built from this repository's Dockerfile."""
    all_services = services()
    built_images = {s.get("image") for s in all_services.values() if "build" in s} - {None}
    return {
        name: svc
        for name, svc in all_services.items()
        if "build" in svc or svc.get("image") in built_images
    }


def command_argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    if isinstance(command, str):
        return shlex.split(command)
    assert isinstance(command, list), f"no command: {service}"
    return [str(part) for part in command]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    assert isinstance(env, dict)
    return {str(key): str(value) for key, value in env.items()}


def dockerfile_env_names() -> set[str]:
    """Variable names set by ENV instructions (``ENV A=1 B=2`` and ``ENV A 1`` forms)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    names: set[str] = set()
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) != 2 or parts[0].upper() != "ENV":
            continue
        tokens = shlex.split(parts[1])
        if "=" in tokens[0]:
            names.update(token.split("=", 1)[0] for token in tokens)
        else:
            names.add(tokens[0])
    return names


def settings_env_names() -> set[str]:
    return {f"CLS_{field.upper()}" for field in Settings.model_fields}


def test_compose_file_parses_with_services() -> None:
    assert {"redis", "rabbitmq", "api", "events", "ingester", "reconciler-stub"} <= set(services())


def test_project_services_run_python_m_of_a_package_with_a_main_module() -> None:
    project = project_services()
    assert project, "no service builds or uses the project image"
    for name, service in project.items():
        argv = command_argv(service)
        assert len(argv) == 3 and argv[:2] == ["python", "-m"], f"{name}: {argv}"
        package = argv[2]
        assert package in PACKAGES, f"{name}: unknown package {package}"
        main = ROOT / package.replace(".", "/") / "__main__.py"
        assert main.is_file(), f"{name}: {main.relative_to(ROOT)} missing"


def test_each_package_has_exactly_one_compose_service() -> None:
    packages = sorted(command_argv(s)[2] for s in project_services().values())
    assert packages == sorted(PACKAGES)


def test_compose_cls_variables_are_settings_fields() -> None:
    known = settings_env_names()
    for name, service in services().items():
        for var in environment(service):
            if var.startswith("CLS_"):
                assert var in known, f"{name}: {var} is not a Settings field"


def test_dockerfile_cls_variables_are_settings_fields() -> None:
    unknown = {v for v in dockerfile_env_names() if v.startswith("CLS_")} - settings_env_names()
    assert not unknown, f"Dockerfile sets unknown CLS_ variables: {sorted(unknown)}"


def test_cls_variable_names_are_well_formed() -> None:
    for name, service in services().items():
        for var in environment(service):
            if var.upper().startswith("CLS_"):
                assert CLS_VAR.match(var), f"{name}: {var}"


def test_compose_settings_values_validate() -> None:
    for name, service in project_services().items():
        values = {
            var.removeprefix("CLS_").lower(): value
            for var, value in environment(service).items()
            if var.startswith("CLS_")
        }
        Settings.model_validate(values)  # raises on e.g. a malformed CLS_CONTROLLER_TOKENS
        assert values, f"{name} sets no CLS_ variables"


def test_depends_on_waits_for_a_healthcheck() -> None:
    all_services = services()
    for name, service in all_services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on must use the long form"
        for target, spec in depends.items():
            assert target in all_services, f"{name} depends on unknown service {target}"
            assert spec.get("condition") in {"service_healthy", "service_started"}, (
                f"{name} -> {target}: {spec}"
            )
            assert "healthcheck" in all_services[target], f"{target} has no healthcheck"


@pytest.mark.parametrize("package", sorted(PACKAGES - {"api_service"}))
def test_workers_wait_for_a_healthy_api(package: str) -> None:
    for service in project_services().values():
        if command_argv(service)[2] == package:
            assert service["depends_on"]["api"]["condition"] == "service_healthy"


def service_running(package: str) -> dict[str, Any]:
    found = [s for s in project_services().values() if command_argv(s)[2] == package]
    assert len(found) == 1, f"{len(found)} services run {package}"
    return found[0]


def test_the_api_leaves_the_event_jobs_to_the_events_service() -> None:
    """The API as deployed runs no relay (Settings.event_jobs), and the events process does,
    on the same Redis, broker and namespace: the outbox the API writes is the one relayed."""
    api_env = environment(service_running("api_service"))
    events_env = environment(service_running("event_jobs"))
    assert Settings.model_validate({"event_jobs": api_env["CLS_EVENT_JOBS"]}).event_jobs == (
        "separate"
    )
    for var in SHARED_VARS:
        assert events_env.get(var) == api_env.get(var), var


def test_the_events_service_serves_nothing_and_nothing_waits_for_it() -> None:
    """No HTTP, so no port and no healthcheck; the relay catches up whenever it starts."""
    all_services = services()
    name = next(n for n, s in project_services().items() if command_argv(s)[2] == "event_jobs")
    assert "healthcheck" not in all_services[name] and "ports" not in all_services[name]
    assert all(name not in (s.get("depends_on") or {}) for s in all_services.values())


def test_redis_has_append_only_file_on() -> None:
    argv = command_argv(services()["redis"])
    assert "--appendonly" in argv
    assert argv[argv.index("--appendonly") + 1] == "yes"


def test_redis_keeps_its_data_in_a_volume() -> None:
    volumes = [str(v) for v in services()["redis"].get("volumes", [])]
    assert any(v.endswith(":/data") for v in volumes), volumes


def compose_tokens() -> dict[str, str]:
    """Controller name -> development token, as docker-compose.yml gives them to the API."""
    raw = environment(services()["api"]).get("CLS_CONTROLLER_TOKENS", "")
    return {name: token for token, name in parse_controller_tokens(raw).items()}


def make_run_tokens() -> dict[str, str]:
    """The same, as `make run` (scripts/run_stack.py) sets them."""
    spec = importlib.util.spec_from_file_location("run_stack", RUN_STACK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up in sys.modules while the module runs.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    raw: str = module.DEV_CONTROLLER_TOKENS
    return {name: token for token, name in parse_controller_tokens(raw).items()}


def readme_tokens() -> dict[str, str]:
    """The same, from the README's table of development tokens."""
    return dict(README_TOKEN_ROW.findall(README.read_text()))


def test_development_tokens_are_one_set_in_make_run_compose_and_the_readme() -> None:
    # A newcomer copies the README's token into a curl: it must work under either stack.
    assert make_run_tokens() == compose_tokens() == readme_tokens()


def test_development_tokens_cover_every_simulated_controller() -> None:
    assert set(compose_tokens()) == {controller.name for controller in ALL_CONTROLLERS}


def test_development_tokens_are_distinct() -> None:
    # One token per controller: a token names the controller whose reports it may write.
    tokens = list(compose_tokens().values())
    assert len(set(tokens)) == len(tokens)


def test_compose_runs_every_simulated_controller() -> None:
    stub_env = environment(service_running("reconciler_stub"))
    selected = select_controllers(stub_env.get("CLS_STUB_CONTROLLERS", ""))
    assert set(selected) == set(ALL_CONTROLLERS)


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [
        line.split(None, 1)[1].strip()
        for line in DOCKERFILE.read_text().splitlines()
        if line.strip().upper().startswith("USER ")
    ]
    assert users and users[-1] not in {"root", "0"}


# ---- the broker's users: docker/rabbitmq/definitions.json ----------------------------------

DEFINITIONS = ROOT / "docker" / "rabbitmq" / "definitions.json"


def load_broker_script() -> Any:
    spec = importlib.util.spec_from_file_location("broker_users", ROOT / "scripts/broker_users.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_broker_loads_the_definitions_file() -> None:
    mounts = services()["rabbitmq"]["volumes"]
    assert f"./{DEFINITIONS.relative_to(ROOT)}:/etc/rabbitmq/definitions.json:ro" in mounts
    conf = [m for m in mounts if m.endswith(".conf:ro")]
    assert len(conf) == 1 and conf[0].split(":")[1].startswith("/etc/rabbitmq/conf.d/")
    assert (
        "load_definitions = /etc/rabbitmq/definitions.json"
        in (ROOT / conf[0][2:].split(":")[0]).read_text()
    )


def test_the_definitions_file_holds_the_users_and_permissions_of_the_code() -> None:
    expected = load_broker_script().compose_definitions(Settings())
    found = json.loads(DEFINITIONS.read_text())
    assert found["vhosts"] == expected["vhosts"]
    assert found["permissions"] == expected["permissions"]
    without_hash = [{k: v for k, v in u.items() if k != "password_hash"} for u in found["users"]]
    assert without_hash == [
        {k: v for k, v in u.items() if k != "password_hash"} for u in expected["users"]
    ]


def test_the_definitions_file_holds_the_development_passwords() -> None:
    settings = Settings()
    passwords = {
        settings.amqp_relay_user: settings.amqp_relay_password.get_secret_value(),
        settings.amqp_ingester_user: settings.amqp_ingester_password.get_secret_value(),
        "guest": "guest",
        **{s.name: settings.controller_broker_user(s.name).password for s in ALL_CONTROLLERS},
    }
    users = json.loads(DEFINITIONS.read_text())["users"]
    assert {u["name"] for u in users} == set(passwords)
    for user in users:
        assert password_matches(user["password_hash"], passwords[user["name"]]), user["name"]


def test_no_service_connects_as_guest_in_compose() -> None:
    for name, service in project_services().items():
        url = environment(service).get("CLS_AMQP_URL", "")
        assert "guest" not in url, f"{name}: {url}"
