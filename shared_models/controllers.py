"""The registry of controllers: which controllers exist, what they report on, which count.

A controller is registered for kinds (cluster, nodepool) and platforms (gcp, aws, azure); only a
registered controller's report on a resource of one of its kinds and platforms is stored, and a
resource is Ready only when every *required* controller of its kind and platform is ready at its
generation. The registry is therefore the trust boundary of status: the reports a resource can
hold are bounded by it, and "Ready" means what it lists.

This module is the contract (the file's model and the default registry); reading the file named
by ``CLS_CONTROLLERS_FILE`` is ``cls_runtime.controllers``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictBool, model_validator

from shared_models.names import Kind
from shared_models.specs import PLATFORMS, Platform
from shared_models.status import ControllerName

T = TypeVar("T")

__all__ = [
    "DEFAULT_REGISTRY",
    "KINDS",
    "ControllerEntry",
    "ControllerRegistry",
    "default_registry",
]

KINDS: tuple[Kind, ...] = ("cluster", "nodepool")


class _Strict(BaseModel):
    # Unknown keys are refused: a misspelt "requried: true" must not silently mean optional.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ControllerEntry(_Strict):
    """One controller: ``{name: gcp-nodepool-controller, kinds: [nodepool], platforms: [gcp],
    required: true}``."""

    name: ControllerName
    kinds: Annotated[list[Kind], Field(min_length=1)]
    platforms: Annotated[list[Platform], Field(min_length=1)]
    # No default: whether a controller holds Ready back is a decision, never an accident.
    required: StrictBool

    @model_validator(mode="after")
    def _no_repeats(self) -> ControllerEntry:
        for field, values in (("kinds", self.kinds), ("platforms", self.platforms)):
            if len(set(values)) != len(values):
                raise ValueError(f"{self.name}: {field} lists a value twice")
        return self


class ControllerRegistry(_Strict):
    """Every controller there is. Lookups are precomputed: the ingester asks once per report."""

    controllers: Annotated[list[ControllerEntry], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_names(self) -> ControllerRegistry:
        seen: set[str] = set()
        for entry in self.controllers:
            if entry.name in seen:
                raise ValueError(f"controller {entry.name!r} is listed twice")
            seen.add(entry.name)
        return self

    # Lookup tables, set once from the validated fields (private: not part of the file).
    _allowed: frozenset[tuple[str, str, str]] = PrivateAttr(frozenset())
    _required: dict[tuple[str, str], tuple[str, ...]] = PrivateAttr(default_factory=dict)
    _by_kind: dict[str, frozenset[str]] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        self._allowed = frozenset(
            (entry.name, kind, platform)
            for entry in self.controllers
            for kind in entry.kinds
            for platform in entry.platforms
        )
        self._required = {
            (kind, platform): tuple(
                sorted(
                    entry.name
                    for entry in self.controllers
                    if entry.required and kind in entry.kinds and platform in entry.platforms
                )
            )
            for kind in KINDS
            for platform in PLATFORMS
        }
        self._by_kind = {
            kind: frozenset(e.name for e in self.controllers if kind in e.kinds) for kind in KINDS
        }

    @property
    def names(self) -> frozenset[str]:
        return frozenset(entry.name for entry in self.controllers)

    def allows(self, name: str, kind: Kind, platform: str) -> bool:
        """Whether ``name`` may report on a resource of ``kind`` on ``platform``."""
        return (name, kind, platform) in self._allowed

    def counted(self, reports: Mapping[str, T], kind: Kind, platform: str) -> dict[str, T]:
        """The ``reports`` (controller -> report) of the controllers that may report on a
        resource of ``kind`` on ``platform``: a report stored before its controller left the
        registry (or before there was one) no longer counts."""
        return {name: r for name, r in reports.items() if self.allows(name, kind, platform)}

    def reports_on(self, name: str, kind: Kind) -> bool:
        """Whether ``name`` reports on resources of ``kind`` on some platform."""
        return name in self._by_kind[kind]

    def required_for(self, kind: Kind, platform: str) -> tuple[str, ...]:
        """The controllers a resource of ``kind`` on ``platform`` waits for, by name."""
        return self._required.get((kind, platform), ())


def default_registry() -> ControllerRegistry:
    """The six simulated controllers, ``<platform>-<kind>-controller``, each required for its
    own platform and kind: the registry when ``CLS_CONTROLLERS_FILE`` is not set."""
    return ControllerRegistry(
        controllers=[
            ControllerEntry(
                name=f"{platform}-{kind}-controller",
                kinds=[kind],
                platforms=[platform],
                required=True,
            )
            for platform in PLATFORMS
            for kind in ("nodepool", "cluster")
        ]
    )


DEFAULT_REGISTRY = default_registry()
