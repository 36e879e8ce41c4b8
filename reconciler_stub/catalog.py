"""Which simulated controllers exist, and which ones ``CLS_STUB_CONTROLLERS`` selects."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared_models.names import Kind
from shared_models.specs import PLATFORMS, Platform

KINDS: tuple[Kind, ...] = ("nodepool", "cluster")


@dataclass(frozen=True)
class ControllerSpec:
    """One simulated controller: it handles the events of one kind of resource on one platform."""

    kind: Kind
    platform: Platform

    @property
    def name(self) -> str:
        return f"{self.platform}-{self.kind}-controller"

    @property
    def binding_key(self) -> str:
        """The routing keys it receives: every event type of its kind, on its platform only."""
        return f"{self.kind}.*.{self.platform}"


ALL_CONTROLLERS: tuple[ControllerSpec, ...] = tuple(
    ControllerSpec(kind, platform) for kind in KINDS for platform in PLATFORMS
)
_BY_NAME = {spec.name: spec for spec in ALL_CONTROLLERS}


def select_controllers(raw: str) -> list[ControllerSpec]:
    """The controllers named in ``raw`` (comma or space separated), or all of them when empty.

    An unknown name is an error rather than silently ignored: a typo would otherwise leave a
    platform without a controller and its resources Pending forever.
    """
    names = [name for name in re.split(r"[\s,]+", raw.strip()) if name]
    if not names:
        return list(ALL_CONTROLLERS)
    unknown = [name for name in names if name not in _BY_NAME]
    if unknown:
        known = ", ".join(sorted(_BY_NAME))
        raise ValueError(f"CLS_STUB_CONTROLLERS: unknown {', '.join(unknown)} (known: {known})")
    return [_BY_NAME[name] for name in dict.fromkeys(names)]
