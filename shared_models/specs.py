"""What users ask for: cluster and nodepool specs, spelled exactly as the user guide spells them.

Optional fields default to None and are left out of stored documents, so a spec reads back as
it was written. Unknown fields are rejected everywhere (``extra="forbid"``).

``deletion_protection`` is the one spec field that is not for the controllers: it guards the
resource against DELETE, and changing it alone is not a spec change (see
``cls_core.services.resources``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from shared_models.validators import (
    DNS1123_SUBDOMAIN,
    DURATION,
    check_duration,
    check_label_key,
    check_label_value,
    check_unique,
    rule_error,
)

Platform = Literal["gcp", "aws", "azure"]
PLATFORMS: tuple[Platform, ...] = ("gcp", "aws", "azure")

# Limits on collections, so that one request cannot make a huge document.
MAX_ZONES = 16
MAX_LABELS = 64
MAX_TAINTS = 64
MAX_ACCELERATORS = 8
MAX_NODES = 1000


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# The member of both specs that guards a resource against deletion (absent: false).
DELETION_PROTECTION = "deletion_protection"
DeletionProtection = Annotated[
    bool | None,
    Field(
        description="true: DELETE answers 409 DELETION_PROTECTED (even with force) until a "
        "write turns it off; changing it needs the project's admin role. Absent or false: "
        "not protected"
    ),
]


NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MACHINE_TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
ZONE_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
RELEASE_PATTERN = r"^\d+\.\d+(\.\d+)?([-+][0-9A-Za-z.-]+)?$"

Name = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=NAME_PATTERN)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=128)]
MachineType = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=MACHINE_TYPE_PATTERN)
]
LabelKey = Annotated[str, StringConstraints(max_length=317), AfterValidator(check_label_key)]
LabelValue = Annotated[str, StringConstraints(max_length=63), AfterValidator(check_label_value)]
# The syntax rules that run as validators are also in the schema, so that the OpenAPI document
# says what the API accepts (the validators give the better error message).
Duration = Annotated[
    str,
    StringConstraints(max_length=16),
    AfterValidator(check_duration),
    Field(json_schema_extra={"pattern": DURATION.pattern}),
]
DiskSize = Annotated[int, Field(ge=10, le=65536)]
Zone = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ZONE_PATTERN)]


def _unique_zones(values: list[str]) -> list[str]:
    return check_unique(values, "zones")


Zones = Annotated[
    list[Zone], Field(min_length=1, max_length=MAX_ZONES), AfterValidator(_unique_zones)
]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=MAX_LABELS)]


class Taint(StrictModel):
    key: LabelKey
    value: LabelValue | None = None  # Kubernetes: a taint may have no value
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


Taints = Annotated[list[Taint], Field(max_length=MAX_TAINTS)]


class Accelerator(StrictModel):
    type: MachineType
    count: int = Field(ge=1, le=16)


class GCPNodePoolPlatform(StrictModel):
    machineType: MachineType  # noqa: N815 - the user guide's spelling
    diskSize: DiskSize | None = None  # noqa: N815
    diskType: (  # noqa: N815
        Literal[
            "pd-standard",
            "pd-balanced",
            "pd-ssd",
            "pd-extreme",
            "hyperdisk-balanced",
            "hyperdisk-throughput",
            "hyperdisk-extreme",
        ]
        | None
    ) = None
    zones: Zones | None = None
    preemptible: bool | None = None
    accelerators: Annotated[list[Accelerator], Field(max_length=MAX_ACCELERATORS)] | None = None
    labels: Labels | None = None
    taints: Taints | None = None


class AWSNodePoolPlatform(StrictModel):
    instanceType: MachineType  # noqa: N815
    volumeSize: DiskSize | None = None  # noqa: N815
    volumeType: Literal["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"] | None = None  # noqa: N815
    availabilityZones: Zones | None = None  # noqa: N815
    spotInstances: bool | None = None  # noqa: N815
    userData: Annotated[str, StringConstraints(max_length=16384)] | None = None  # noqa: N815
    labels: Labels | None = None
    taints: Taints | None = None


class AzureNodePoolPlatform(StrictModel):
    vmSize: MachineType  # noqa: N815
    osDiskSizeGB: Annotated[int, Field(ge=30, le=4096)] | None = None  # noqa: N815
    osDiskType: (  # noqa: N815
        Literal["Premium_LRS", "Standard_LRS", "StandardSSD_LRS", "Premium_ZRS", "StandardSSD_ZRS"]
        | None
    ) = None
    availabilityZones: (  # noqa: N815
        Annotated[
            list[Literal["1", "2", "3"]],
            # Bounded like every list: 200,000 bad items would each be an error to convert.
            Field(min_length=1, max_length=MAX_ZONES),
            AfterValidator(_unique_zones),
        ]
        | None
    ) = None
    spotInstances: bool | None = None  # noqa: N815
    labels: Labels | None = None
    taints: Taints | None = None


class _PlatformChoice(StrictModel):
    """``type`` names the platform; exactly the block of that name must be present."""

    type: Platform

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """Documented as what it is, a union discriminated by ``type``: one variant per platform,
        each with its own block required and the other blocks absent (or null, which the
        validator treats as absent). Pydantic alone would say "type, and any blocks"."""
        reference = handler(core_schema)
        schema = handler.resolve_ref_schema(reference)
        blocks = {p: schema["properties"][p]["anyOf"][0] for p in PLATFORMS}
        variants = []
        for platform in PLATFORMS:
            properties: dict[str, Any] = {"type": {"type": "string", "const": platform}}
            for other in PLATFORMS:
                properties[other] = blocks[other] if other == platform else {"type": "null"}
            variants.append(
                {
                    "type": "object",
                    "title": f"{cls.__name__} ({platform})",
                    "properties": properties,
                    "required": ["type", platform],
                    "additionalProperties": False,
                }
            )
        for key in ("properties", "required", "additionalProperties", "type"):
            schema.pop(key, None)
        # No OpenAPI "discriminator": it needs each variant as a named component; the "const"
        # of each variant's type says the same to any JSON Schema validator.
        schema["oneOf"] = variants
        return reference

    @model_validator(mode="after")
    def _exactly_the_matching_block(self) -> Self:
        present = [p for p in PLATFORMS if getattr(self, p) is not None]
        if present != [self.type]:
            others = [p for p in present if p != self.type]
            if self.type not in present:
                raise rule_error(
                    self.type, f"platform.{self.type} is required when type is '{self.type}'"
                )
            raise rule_error(
                others[0],
                f"only platform.{self.type} may be given when type is '{self.type}' "
                f"(found {', '.join(others)})",
            )
        return self


class NodePoolPlatform(_PlatformChoice):
    gcp: GCPNodePoolPlatform | None = None
    aws: AWSNodePoolPlatform | None = None
    azure: AzureNodePoolPlatform | None = None

    @property
    def block(self) -> GCPNodePoolPlatform | AWSNodePoolPlatform | AzureNodePoolPlatform:
        block = getattr(self, self.type)
        assert block is not None  # guaranteed by the validator
        return block  # type: ignore[no-any-return]

    @property
    def zones(self) -> list[str]:
        block = self.block
        if isinstance(block, GCPNodePoolPlatform):
            return list(block.zones or [])
        return list(block.availabilityZones or [])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.block.labels or {})


class Autoscaling(StrictModel):
    enabled: bool
    minNodes: Annotated[int, Field(ge=0, le=MAX_NODES)] | None = None  # noqa: N815
    maxNodes: Annotated[int, Field(ge=0, le=MAX_NODES)] | None = None  # noqa: N815
    targetCPUUtilization: Annotated[int, Field(ge=1, le=100)] | None = None  # noqa: N815
    targetMemoryUtilization: Annotated[int, Field(ge=1, le=100)] | None = None  # noqa: N815
    scaleDownDelay: Duration | None = None  # noqa: N815
    scaleUpDelay: Duration | None = None  # noqa: N815

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.enabled and (self.minNodes is None or self.maxNodes is None):
            missing = "minNodes" if self.minNodes is None else "maxNodes"
            raise rule_error(
                missing, "minNodes and maxNodes are required when autoscaling is enabled"
            )
        # Checked even while disabled: bounds kept for later must still make sense.
        if (
            self.minNodes is not None
            and self.maxNodes is not None
            and self.minNodes > self.maxNodes
        ):
            raise rule_error(
                "minNodes", f"minNodes ({self.minNodes}) must not exceed maxNodes ({self.maxNodes})"
            )
        return self


class NodePoolSpec(StrictModel):
    platform: NodePoolPlatform
    autoscaling: Autoscaling | None = None
    nodeCount: Annotated[int, Field(ge=0, le=MAX_NODES)]  # noqa: N815
    deletion_protection: DeletionProtection = None

    @model_validator(mode="after")
    def _node_count_within_autoscaling(self) -> Self:
        auto = self.autoscaling
        if auto is None or not auto.enabled or auto.minNodes is None or auto.maxNodes is None:
            return self
        if not auto.minNodes <= self.nodeCount <= auto.maxNodes:
            raise rule_error(
                "nodeCount",
                f"nodeCount ({self.nodeCount}) must be between autoscaling.minNodes "
                f"({auto.minNodes}) and autoscaling.maxNodes ({auto.maxNodes})",
            )
        return self

    @property
    def desired_nodes(self) -> int:
        """What a controller should run: nodeCount, clamped to the autoscaling bounds."""
        auto = self.autoscaling
        if auto is None or not auto.enabled or auto.minNodes is None or auto.maxNodes is None:
            return self.nodeCount
        return max(auto.minNodes, min(auto.maxNodes, self.nodeCount))


# ---- clusters ----------------------------------------------------------------------------

GCP_PROJECT_ID = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"
GCP_REGION = r"^[a-z]+-[a-z]+[0-9]+$"
AWS_REGION = r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$"
AZURE_LOCATION = r"^[a-z][a-z0-9]{2,40}$"


class GCPClusterPlatform(StrictModel):
    projectID: Annotated[str, StringConstraints(pattern=GCP_PROJECT_ID)]  # noqa: N815
    region: Annotated[str, StringConstraints(pattern=GCP_REGION, max_length=64)]
    zone: Zone | None = None

    @model_validator(mode="after")
    def _zone_in_region(self) -> Self:
        if self.zone is not None and not self.zone.startswith(self.region + "-"):
            raise rule_error("zone", f"zone {self.zone!r} is not in region {self.region!r}")
        return self


class AWSClusterPlatform(StrictModel):
    region: Annotated[str, StringConstraints(pattern=AWS_REGION, max_length=32)]


class AzureClusterPlatform(StrictModel):
    location: Annotated[str, StringConstraints(pattern=AZURE_LOCATION)]


class ClusterPlatform(_PlatformChoice):
    gcp: GCPClusterPlatform | None = None
    aws: AWSClusterPlatform | None = None
    azure: AzureClusterPlatform | None = None

    @property
    def region(self) -> str:
        if self.gcp is not None:
            return self.gcp.region
        if self.aws is not None:
            return self.aws.region
        assert self.azure is not None
        return self.azure.location


class Release(StrictModel):
    version: Annotated[str, StringConstraints(pattern=RELEASE_PATTERN)]
    channel: Literal["stable", "fast", "candidate", "eus"] | None = None


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block such as '10.128.0.0/14'") from exc
    return value


Cidr = Annotated[str, StringConstraints(max_length=64), AfterValidator(_cidr)]


class Networking(StrictModel):
    podCIDR: Cidr | None = None  # noqa: N815
    serviceCIDR: Cidr | None = None  # noqa: N815
    machineCIDR: Cidr | None = None  # noqa: N815

    @model_validator(mode="after")
    def _no_overlap(self) -> Self:
        named = [(n, getattr(self, n)) for n in ("podCIDR", "serviceCIDR", "machineCIDR")]
        nets = [(n, ipaddress.ip_network(v)) for n, v in named if v is not None]
        for i, (name_a, net_a) in enumerate(nets):
            for name_b, net_b in nets[i + 1 :]:
                if net_a.version == net_b.version and net_a.overlaps(net_b):
                    raise rule_error(name_b, f"{name_a} and {name_b} overlap")
        return self


def _dns_name(value: str) -> str:
    if not DNS1123_SUBDOMAIN.fullmatch(value):
        raise ValueError(f"{value!r} is not a DNS name such as 'example.com'")
    return value


class DNS(StrictModel):
    baseDomain: Annotated[  # noqa: N815
        str,
        AfterValidator(_dns_name),
        Field(json_schema_extra={"pattern": DNS1123_SUBDOMAIN.pattern}),
    ]


class ClusterSpec(StrictModel):
    platform: ClusterPlatform
    release: Release | None = None
    networking: Networking | None = None
    dns: DNS | None = None
    deletion_protection: DeletionProtection = None


# What each pattern means, in words: a 400 says this rather than quoting the regex.
PATTERN_HINTS = {
    NAME_PATTERN: "must be a DNS-1123 label: lowercase letters, digits and '-', "
    "starting and ending with a letter or digit",
    MACHINE_TYPE_PATTERN: "must be letters, digits, '.', '_' or '-', "
    "starting with a letter or digit",
    ZONE_PATTERN: "must be lowercase letters, digits and '-'",
    RELEASE_PATTERN: "must be a version such as '1.30' or '1.30.2'",
    GCP_PROJECT_ID: "must be a GCP project id: 6-30 lowercase letters, digits or '-', "
    "starting with a letter",
    GCP_REGION: "must be a GCP region such as 'us-central1'",
    AWS_REGION: "must be an AWS region such as 'us-west-2'",
    AZURE_LOCATION: "must be an Azure location such as 'eastus'",
}


def zone_region_problem(platform: Platform, cluster_region: str, zone: str) -> str | None:
    """Why a nodepool zone cannot belong to its cluster's region, or None when it can."""
    if platform == "gcp" and not re.fullmatch(rf"{re.escape(cluster_region)}-[a-z]", zone):
        return f"zone {zone!r} is not in the cluster's region {cluster_region!r}"
    if platform == "aws" and not re.fullmatch(rf"{re.escape(cluster_region)}[a-z]", zone):
        return f"availability zone {zone!r} is not in the cluster's region {cluster_region!r}"
    return None
