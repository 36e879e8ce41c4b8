"""asyncapi.yaml, the contract for controller authors, matches the models the code uses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel

from cls_runtime.amqp import STATUS_ROUTING_KEYS
from shared_models.events import Event, EventType
from shared_models.names import Names
from shared_models.specs import Platform
from shared_models.status import (
    ClusterStatusReport,
    Condition,
    ControllerError,
    NodePoolStatusReport,
)

DOC = Path(__file__).resolve().parents[2] / "asyncapi.yaml"
# Words for people, not structure: the document may word them differently from docstrings.
PROSE = {"title", "description", "examples"}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOC.read_text())
    return loaded


def structure(schema: Any) -> Any:
    """A JSON schema without its prose, to compare what it accepts."""
    if isinstance(schema, dict):
        return {k: structure(v) for k, v in schema.items() if k not in PROSE and k != "$defs"}
    if isinstance(schema, list):
        return [structure(item) for item in schema]
    return schema


def model_schema(model: type[BaseModel]) -> Any:
    return structure(model.model_json_schema(ref_template="#/components/schemas/{model}"))


@pytest.mark.parametrize(
    "model",
    [Event, Condition, ControllerError, NodePoolStatusReport, ClusterStatusReport],
    ids=lambda m: m.__name__,
)
def test_schema_in_the_document_matches_the_model(
    doc: dict[str, Any], model: type[BaseModel]
) -> None:
    documented = doc["components"]["schemas"][model.__name__]
    assert list(documented["properties"]) == list(model.model_json_schema()["properties"])
    assert documented["required"] == model.model_json_schema()["required"]
    assert structure(documented) == model_schema(model)


def test_every_event_type_has_a_routing_key_pattern(doc: dict[str, Any]) -> None:
    event_channels = {name for name, channel in doc["channels"].items() if "subscribe" in channel}
    assert event_channels == {f"{event_type}.{{platform}}" for event_type in get_args(EventType)}


def test_every_status_routing_key_is_documented(doc: dict[str, Any]) -> None:
    status_channels = {name for name, channel in doc["channels"].items() if "publish" in channel}
    assert status_channels == set(STATUS_ROUTING_KEYS)


def test_platform_parameter_lists_every_platform(doc: dict[str, Any]) -> None:
    documented = doc["components"]["parameters"]["platform"]["schema"]["enum"]
    assert documented == list(get_args(Platform))


def test_exchanges_are_named_as_the_code_names_them(doc: dict[str, Any]) -> None:
    names = Names("cls")  # the document uses the default namespace
    bindings = doc["components"]["channelBindings"]
    assert bindings["events"]["exchange"]["name"] == names.events_exchange
    assert bindings["status"]["exchange"]["name"] == names.status_exchange
    assert {bindings[b]["exchange"]["type"] for b in bindings} == {"topic"}
    assert re.search(re.escape(names.status_queue), DOC.read_text())


def test_examples_are_valid_messages(doc: dict[str, Any]) -> None:
    messages = doc["components"]["messages"]
    for example in messages["Event"]["examples"]:
        event = Event.model_validate(example["payload"])
        assert example["headers"] == {"platform": event.platform, "generation": event.generation}
    for example in messages["NodePoolStatusReport"]["examples"]:
        NodePoolStatusReport.model_validate(example["payload"])


def test_delivery_guarantees_are_stated(doc: dict[str, Any]) -> None:
    text = doc["info"]["description"]
    for promise in (
        "At least once",
        "Deduplicate by `id`",
        "In order per resource",
        "Deletion carries generation + 1",
        "A rename without a spec change publishes nothing",
        "`force=true`",
    ):
        assert promise in text
