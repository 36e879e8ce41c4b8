"""Who may do what: a caller's role in the project a resource belongs to.

Every read and write of a resource asks ``Access.require`` with the role it needs. No role at
all is a 404, the same answer as for a resource that does not exist (nobody learns what other
projects hold); a role too weak is a 403. Roles are read from Redis on each request, so a
removed member loses access on the next request, on every replica.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from cls_core.errors import Forbidden, NotFound
from cls_core.store.project_store import Grant, ProjectStore
from shared_models.projects import Role, personal_project_id, strongest


@dataclass(frozen=True)
class Caller:
    """A user making a request: their email and the groups the gateway vouches for."""

    email: str
    groups: tuple[str, ...] = field(default=())

    @cached_property
    def personal_project(self) -> str:
        return personal_project_id(self.email)


class Access:
    def __init__(self, projects: ProjectStore) -> None:
        self._projects = projects

    async def role_in(self, caller: Caller, project_id: str) -> Role | None:
        """The caller's strongest role in the project: as a member, or through a group. In
        their personal project a caller is always its admin (read nothing for it)."""
        if project_id == caller.personal_project:
            return Role.ADMIN
        grants = await self._projects.grants(project_id, caller.email, caller.groups)
        return role_of(grants)

    async def allows(self, caller: Caller, project_id: str, needed: Role) -> bool:
        role = await self.role_in(caller, project_id)
        return role is not None and role.allows(needed)

    async def require(
        self, caller: Caller, project_id: str, needed: Role, not_found: Callable[[], NotFound]
    ) -> Role:
        """The caller's role, if it allows ``needed``: otherwise ``not_found()`` when the caller
        has no role (as if nothing were there), a 403 when it is too weak."""
        return judge(await self.role_in(caller, project_id), needed, not_found)


def role_of(grants: list[Grant]) -> Role | None:
    """The strongest role of a caller's grants in a project (None: they have none)."""
    return strongest([Role(grant.role) for grant in grants])


def judge(role: Role | None, needed: Role, not_found: Callable[[], NotFound]) -> Role:
    """``role`` if it allows ``needed``; ``not_found()`` without a role, a 403 when too weak."""
    if role is None:
        raise not_found()
    if not role.allows(needed):
        raise too_weak(role, needed)
    return role


def too_weak(role: Role, needed: Role) -> Forbidden:
    return Forbidden(
        f"Your role in this project ({role}) does not allow this",
        f"it needs the {needed} role; a project admin can grant it",
    )
