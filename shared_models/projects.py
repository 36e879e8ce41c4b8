"""Projects: the unit that owns clusters, and the roles its members and groups hold in it.

A project is where a platform team shares its clusters (GKE's project, AKS's resource group,
EKS's account). Every email has a personal project, whose id is derived from the email, so a
user who never made a project works alone exactly as before projects existed.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared_models.resources import ResourceId
from shared_models.specs import Name

# The namespace of personal project ids: uuid5(this, email). Fixed forever: changing it would
# orphan every personal project.
_PERSONAL_NAMESPACE = uuid.UUID("6c1b6f0e-2f4d-5a57-9a8e-3f0c2f8d1c11")
PERSONAL_PROJECT_NAME = "personal"


def personal_project_id(email: str) -> str:
    """The id of ``email``'s personal project (``email`` as normalised by the API)."""
    return str(uuid.uuid5(_PERSONAL_NAMESPACE, email))


class Role(StrEnum):
    """What a member may do in a project; each role may do everything the roles before it may."""

    VIEWER = "viewer"  # read every resource of the project
    EDITOR = "editor"  # create, change and delete clusters and nodepools
    ADMIN = "admin"  # members, groups, forced deletes, transfers, the project itself

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 1, Role.EDITOR: 2, Role.ADMIN: 3}


def strongest(roles: list[Role]) -> Role | None:
    return max(roles, key=lambda role: role.rank) if roles else None


Description = Annotated[str, StringConstraints(max_length=256)]
# Gateway group names as identity providers write them ("platform-team", "sre@example.com"...);
# no "/": a group is a path segment.
GroupName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ProjectCreate(_Body):
    name: Name
    description: Description = ""


class ProjectPatch(_Body):
    """A merge of the fields given (absent: unchanged)."""

    name: Name | None = None
    description: Description | None = None


class RoleGrant(_Body):
    """The body of PUT .../members/{email} and PUT .../groups/{group}."""

    role: Annotated[Role, Field(strict=False)]  # strict would refuse the role's JSON string


class ClusterTransfer(_Body):
    """The body of POST /clusters/{id}/transfer."""

    project_id: ResourceId


class Project(BaseModel):
    id: str
    name: str
    description: str
    personal: bool = Field(description="The personal project of created_by (never deleted)")
    resource_version: str
    role: Role | None = Field(
        description="The caller's role in the project (from their membership or a group)"
    )
    created_by: str
    created_at: datetime
    updated_at: datetime


class ProjectList(BaseModel):
    projects: list[Project]
    total: int
    limit: int
    offset: int


class Member(BaseModel):
    email: str
    role: Role
    added_by: str
    added_at: datetime


class MemberList(BaseModel):
    members: list[Member]


class GroupMember(BaseModel):
    group: str
    role: Role
    added_by: str
    added_at: datetime


class GroupList(BaseModel):
    groups: list[GroupMember]


class Operation(BaseModel):
    """One change of a project's membership or contents, with who made it."""

    id: str = Field(description="Ordered: a later operation has a greater id")
    type: str = Field(
        description="project.created, project.updated, member.set, member.removed, group.set, "
        "group.removed, cluster.transferred_in, cluster.transferred_out"
    )
    actor: str
    at: datetime
    target: str | None = Field(None, description="The member, group or cluster it concerns")
    role: Role | None = None
    previous_role: Role | None = None
    detail: str | None = None


class OperationList(BaseModel):
    operations: list[Operation]
