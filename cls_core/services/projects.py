"""Project rules: projects, their members and groups, and the record of who changed what.

A project's writes are guarded transactions like a resource's: each reads the project (with its
members and groups), decides, and commits only if the project's resource_version is unchanged,
so two admins demoting each other cannot leave a project without an admin. Every membership
change is an operation in the project's stream, with its actor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from cls_core.errors import ApiError, Conflict, NotFound, QuotaExceeded, ValidationFailed
from cls_core.services.access import Caller, judge, role_of
from cls_core.services.common import (
    RV_CHANGED,
    creation_score,
    iso,
    new_id,
    new_resource_version,
    retry_on_race,
    utcnow,
)
from cls_core.store import RedisStore, Txn, TxnFailed
from cls_core.store.project_store import Grant, ProjectRecord
from cls_runtime.settings import Settings
from shared_models.names import Names
from shared_models.projects import (
    PERSONAL_PROJECT_NAME,
    ProjectCreate,
    ProjectPatch,
    Role,
    personal_project_id,
)
from shared_models.validators import normalise_email

T = TypeVar("T")

NAME_TAKEN = "name_taken"
MEMBER_QUOTA = "member_quota"
PROJECT_QUOTA = "project_quota"
CLUSTERS_LEFT = "clusters_left"
_EXISTS = "exists"
# The operations a project keeps (the oldest are trimmed beyond).
OPERATIONS_KEPT = 1000
# Personal projects known to exist, per process (they are never deleted); bounded.
_KNOWN_PERSONAL_MAX = 100_000


def project_not_found() -> NotFound:
    return NotFound("Project not found")


def record_operation(
    txn: Txn,
    names: Names,
    project_id: str,
    kind: str,
    actor: str,
    now: datetime,
    **details: str | None,
) -> None:
    """Append an operation to the project's stream, in the transaction that makes the change."""
    fields = {"type": kind, "actor": actor, "at": iso(now)}
    fields.update({k: v for k, v in details.items() if v is not None})
    txn.xadd(names.project_operations(project_id), fields, maxlen=OPERATIONS_KEPT)


@dataclass(frozen=True)
class _Grantee:
    """A member (an email) or a group in one project: where its grant is kept, and where the
    projects it has a role in are listed."""

    kind: str  # "member" or "group": the operation types are "<kind>.set", "<kind>.removed"
    project_id: str
    name: str
    grants_key: str
    memberships_key: str


@dataclass(frozen=True)
class ProjectState:
    """A project as a write reads it: the record, its grants, and the caller's role in it."""

    project: ProjectRecord
    members: dict[str, Grant]
    groups: dict[str, Grant]
    role: Role
    next_rv: str = ""  # the resource_version a write of the project stores


def project_view(project: ProjectRecord, role: Role | None) -> dict[str, Any]:
    doc = project.doc
    return {
        "id": project.id,
        "name": doc["name"],
        "description": doc.get("description", ""),
        "personal": project.personal,
        "resource_version": project.rv,
        "role": None if role is None else role.value,
        "created_by": doc["created_by"],
        "created_at": doc["created_at"],
        "updated_at": doc["updated_at"],
    }


def member_email(raw: str) -> str:
    """A member's email from a path (400 when it is not an email)."""
    email = normalise_email(raw)
    if email is None:
        raise ValidationFailed.of("email", f"email: {raw[:80]!r} is not an email address")
    return email


class ProjectService:
    def __init__(self, store: RedisStore, settings: Settings) -> None:
        self.store = store
        self.names = store.names
        self.settings = settings
        self._known_personal: set[str] = set()

    # ---- personal projects ---------------------------------------------------------------------
    async def ensure_personal(self, caller: Caller, *, cached: bool = True) -> None:
        """Create the caller's personal project unless it exists (on first use)."""
        if cached and caller.email in self._known_personal:
            return
        now = utcnow()
        project_id = caller.personal_project
        doc = {
            "id": project_id,
            "name": PERSONAL_PROJECT_NAME,
            "description": f"The personal project of {caller.email}",
            "personal": True,
            "created_by": caller.email,
            "created_at": iso(now),
            "updated_at": iso(now),
        }
        project = ProjectRecord(
            project_id, doc, new_resource_version(), PERSONAL_PROJECT_NAME, caller.email, 0.0
        )
        names = self.names
        txn = Txn().expect_field(names.project(project_id), "rv", None, _EXISTS)
        txn.hset(names.project(project_id), project.to_hash())
        admin = Grant(Role.ADMIN.value, caller.email, iso(now))
        txn.hset(names.project_members(project_id), {caller.email: admin.encode()})
        txn.zadd(names.user_projects(caller.email), 0.0, project_id)
        txn.hset(names.project_names(caller.email), {PERSONAL_PROJECT_NAME: project_id})
        try:
            await self.store.run(txn)
        except TxnFailed as failed:
            if failed.code != _EXISTS:
                raise
        if len(self._known_personal) >= _KNOWN_PERSONAL_MAX:
            self._known_personal.clear()
        self._known_personal.add(caller.email)

    # ---- reads -----------------------------------------------------------------------------
    async def state(self, caller: Caller, project_id: str, needed: Role) -> ProjectState:
        """The project, if the caller's role allows ``needed`` (404 without a role, 403 when
        it is too weak)."""
        project, members, groups = await self.store.projects.with_grants(project_id)
        if project is None and project_id == caller.personal_project:
            await self.ensure_personal(caller, cached=False)  # first use
            project, members, groups = await self.store.projects.with_grants(project_id)
        if project is None:
            raise project_not_found()
        role = judge(_role_from(caller, project, members, groups), needed, project_not_found)
        return ProjectState(project, members, groups, role)

    async def get(self, caller: Caller, project_id: str) -> dict[str, Any]:
        state = await self.state(caller, project_id, Role.VIEWER)
        return project_view(state.project, state.role)

    async def list_for(self, caller: Caller, limit: int, offset: int) -> tuple[int, list[Any]]:
        """(total, a page of) the projects the caller has a role in, the personal one first,
        then in the order they were created."""
        projects_store = self.store.projects
        ids = await projects_store.member_of(caller.email, caller.groups)
        if caller.personal_project not in ids:  # first use (or a Redis that lost it)
            await self.ensure_personal(caller, cached=False)
            ids = await projects_store.member_of(caller.email, caller.groups)
        projects = sorted(await projects_store.get_many(ids), key=lambda p: (p.seq, p.id))
        page = projects[offset : offset + limit]
        grants = await projects_store.grants_many([p.id for p in page], caller.email, caller.groups)
        views = []
        for project, held in zip(page, grants, strict=True):
            personal = project.id == caller.personal_project
            views.append(project_view(project, Role.ADMIN if personal else role_of(held)))
        return len(projects), views

    async def members(self, caller: Caller, project_id: str) -> list[dict[str, str]]:
        state = await self.state(caller, project_id, Role.VIEWER)
        return [
            {"email": email, **_grant_view(grant)} for email, grant in sorted(state.members.items())
        ]

    async def groups(self, caller: Caller, project_id: str) -> list[dict[str, str]]:
        state = await self.state(caller, project_id, Role.VIEWER)
        return [
            {"group": group, **_grant_view(grant)} for group, grant in sorted(state.groups.items())
        ]

    async def operations(self, caller: Caller, project_id: str, limit: int) -> list[Any]:
        await self.state(caller, project_id, Role.VIEWER)
        entries = await self.store.projects.operations(project_id, limit)
        return [{"id": stream_id, **fields} for stream_id, fields in entries]

    # ---- writes ----------------------------------------------------------------------------
    async def create(self, caller: Caller, body: ProjectCreate) -> dict[str, Any]:
        if body.name == PERSONAL_PROJECT_NAME:
            raise ValidationFailed.of(
                "name", f"name: '{PERSONAL_PROJECT_NAME}' is your personal project's name"
            )
        await self.ensure_personal(caller)
        now = utcnow()
        project_id = new_id()
        doc = {
            "id": project_id,
            "name": body.name,
            "description": body.description,
            "personal": False,
            "created_by": caller.email,
            "created_at": iso(now),
            "updated_at": iso(now),
        }
        project = ProjectRecord(
            project_id, doc, new_resource_version(), body.name, caller.email, creation_score()
        )
        names = self.names
        txn = Txn()
        txn.expect_field(names.project_names(caller.email), body.name, None, NAME_TAKEN)
        self._expect_room_for(txn, names.user_projects(caller.email))
        txn.hset(names.project(project_id), project.to_hash())
        admin = Grant(Role.ADMIN.value, caller.email, iso(now))
        txn.hset(names.project_members(project_id), {caller.email: admin.encode()})
        txn.zadd(names.user_projects(caller.email), project.seq, project_id)
        txn.hset(names.project_names(caller.email), {body.name: project_id})
        record_operation(txn, names, project_id, "project.created", caller.email, now)
        await self._run(txn, body.name)
        return project_view(project, Role.ADMIN)

    async def patch(self, caller: Caller, project_id: str, body: ProjectPatch) -> dict[str, Any]:
        def change(txn: Txn, state: ProjectState, now: datetime) -> dict[str, Any]:
            project = state.project
            name = project.name if body.name is None else body.name
            description = project.doc.get("description", "")
            if body.description is not None:
                description = body.description
            if name != project.name:
                if name == PERSONAL_PROJECT_NAME:
                    raise ValidationFailed.of("name", f"name: '{name}' is reserved")
                names_key = self.names.project_names(project.creator)
                txn.expect_field(names_key, name, None, NAME_TAKEN)
                txn.hdel(names_key, project.name)
                txn.hset(names_key, {name: project.id})
            doc = {**project.doc, "name": name, "description": description, "updated_at": iso(now)}
            updated = ProjectRecord(
                project.id, doc, state.next_rv, name, project.creator, project.seq
            )
            txn.hset(self.names.project(project.id), updated.to_hash())
            record_operation(
                txn, self.names, project.id, "project.updated", caller.email, now, detail=name
            )
            return project_view(updated, state.role)

        return await self._change(caller, project_id, change, name=body.name)

    async def delete(self, caller: Caller, project_id: str) -> None:
        def remove(txn: Txn, state: ProjectState, now: datetime) -> None:
            project = state.project
            if project.personal:
                raise Conflict(
                    "A personal project cannot be deleted",
                    "it is where your clusters go by default",
                )
            names = self.names
            txn.expect_count(names.project_clusters(project.id), 0, CLUSTERS_LEFT)
            for key in (
                names.project(project.id),
                names.project_members(project.id),
                names.project_groups(project.id),
                names.project_operations(project.id),
                names.watch_stream(project.id),
            ):
                txn.delete(key)
            txn.hdel(names.project_names(project.creator), project.name)
            for email in state.members:
                txn.zrem(names.user_projects(email), project.id)
            for group in state.groups:
                txn.zrem(names.group_projects(group), project.id)

        await self._change(caller, project_id, remove)

    async def set_member(
        self, caller: Caller, project_id: str, email: str, role: Role
    ) -> dict[str, str]:
        def grant(txn: Txn, state: ProjectState, now: datetime) -> dict[str, str]:
            held = state.members.get(email)
            if held is not None and held.role != role.value:
                _keep_an_admin(state, email, role)
            kept = self._grant(txn, self._member(project_id, email), held, role, caller, now)
            return {"email": email, **_grant_view(kept)}

        return await self._change(caller, project_id, grant)

    async def remove_member(self, caller: Caller, project_id: str, email: str) -> None:
        """An admin removes a member; any member removes themselves (leaves)."""
        needed = Role.VIEWER if email == caller.email else Role.ADMIN

        def remove(txn: Txn, state: ProjectState, now: datetime) -> None:
            held = state.members.get(email)
            if held is None:
                raise NotFound("Member not found", f"{email} is not a member of this project")
            _keep_an_admin(state, email, None)
            self._revoke(txn, self._member(project_id, email), held, caller, now)

        await self._change(caller, project_id, remove, needed=needed)

    async def set_group(
        self, caller: Caller, project_id: str, group: str, role: Role
    ) -> dict[str, str]:
        def grant(txn: Txn, state: ProjectState, now: datetime) -> dict[str, str]:
            held = state.groups.get(group)
            kept = self._grant(txn, self._group(project_id, group), held, role, caller, now)
            return {"group": group, **_grant_view(kept)}

        return await self._change(caller, project_id, grant)

    async def remove_group(self, caller: Caller, project_id: str, group: str) -> None:
        def remove(txn: Txn, state: ProjectState, now: datetime) -> None:
            held = state.groups.get(group)
            if held is None:
                raise NotFound("Group not found", f"{group} has no role in this project")
            self._revoke(txn, self._group(project_id, group), held, caller, now)

        await self._change(caller, project_id, remove)

    # ---- grants: a member's or a group's role, written the same way --------------------------
    def _member(self, project_id: str, email: str) -> _Grantee:
        names = self.names
        return _Grantee(
            "member",
            project_id,
            email,
            names.project_members(project_id),
            names.user_projects(email),
        )

    def _group(self, project_id: str, group: str) -> _Grantee:
        names = self.names
        return _Grantee(
            "group",
            project_id,
            group,
            names.project_groups(project_id),
            names.group_projects(group),
        )

    def _grant(
        self,
        txn: Txn,
        who: _Grantee,
        held: Grant | None,
        role: Role,
        caller: Caller,
        now: datetime,
    ) -> Grant:
        """Give ``who`` ``role`` (within the quotas when it is new); the grant as kept."""
        if held is not None and held.role == role.value:
            return held
        if held is None:
            self._expect_room_for(txn, who.memberships_key)
            limit = self.settings.max_members_per_project
            txn.expect_hash_size_below(who.grants_key, limit, MEMBER_QUOTA)
        new = Grant(role.value, caller.email, held.added_at if held else iso(now))
        txn.hset(who.grants_key, {who.name: new.encode()})
        txn.zadd(who.memberships_key, creation_score(), who.project_id)
        record_operation(
            txn,
            self.names,
            who.project_id,
            f"{who.kind}.set",
            caller.email,
            now,
            target=who.name,
            role=role.value,
            previous_role=held.role if held else None,
        )
        return new

    def _revoke(self, txn: Txn, who: _Grantee, held: Grant, caller: Caller, now: datetime) -> None:
        txn.hdel(who.grants_key, who.name)
        txn.zrem(who.memberships_key, who.project_id)
        record_operation(
            txn,
            self.names,
            who.project_id,
            f"{who.kind}.removed",
            caller.email,
            now,
            target=who.name,
            previous_role=held.role,
        )

    # ---- internals -------------------------------------------------------------------------
    async def _change(
        self,
        caller: Caller,
        project_id: str,
        decide: Callable[[Txn, ProjectState, datetime], T],
        *,
        needed: Role = Role.ADMIN,
        name: str | None = None,
    ) -> T:
        """Read the project, let ``decide`` add its writes, and commit them with a new
        resource_version if the project did not change meanwhile (else read and decide again)."""

        async def attempt() -> T:
            state = replace(
                await self.state(caller, project_id, needed), next_rv=new_resource_version()
            )
            now = utcnow()
            key = self.names.project(project_id)
            txn = Txn().expect_field(key, "rv", state.project.rv, RV_CHANGED)
            # Before ``decide``'s writes: a delete's removal of the project must come after it
            # (written after, it left the hash with its "rv", which writes check a project by).
            txn.hset(key, {"rv": state.next_rv})
            result = decide(txn, state, now)
            await self._run(txn, name)
            return result

        return await retry_on_race(attempt, "Project")

    def _expect_room_for(self, txn: Txn, memberships_key: str) -> None:
        txn.expect_count_below(
            memberships_key, self.settings.max_projects_per_member, PROJECT_QUOTA
        )

    async def _run(self, txn: Txn, name: str | None) -> None:
        """Commit a project write; a failed check becomes the error it means."""
        try:
            await self.store.run(txn)
        except TxnFailed as failed:
            refusal = self._refusals(name).get(failed.code)
            if refusal is None:
                raise
            raise refusal(failed.actual) from failed

    def _refusals(self, name: str | None) -> dict[str, Callable[[str], ApiError]]:
        """What each check of a project write means when it fails (given what it found)."""
        projects_max = self.settings.max_projects_per_member
        members_max = self.settings.max_members_per_project
        return {
            NAME_TAKEN: lambda found: Conflict(
                f"Project with name '{name}' already exists", f"existing project id: {found}"
            ),
            PROJECT_QUOTA: lambda found: QuotaExceeded(
                f"Quota exceeded: at most {projects_max} projects per member",
                f"the member or group already belongs to {found} projects",
            ),
            MEMBER_QUOTA: lambda found: QuotaExceeded(
                f"Quota exceeded: at most {members_max} members (and {members_max} groups) "
                "per project",
                f"the project has {found}",
            ),
            CLUSTERS_LEFT: lambda found: Conflict(
                "Project still has clusters",
                f"{found} cluster(s); delete them or transfer them to another project",
            ),
        }


def _role_from(
    caller: Caller, project: ProjectRecord, members: dict[str, Grant], groups: dict[str, Grant]
) -> Role | None:
    if project.id == caller.personal_project:
        return Role.ADMIN
    held = [members[caller.email]] if caller.email in members else []
    held += [groups[g] for g in caller.groups if g in groups]
    return role_of(held)


def _keep_an_admin(state: ProjectState, email: str, new_role: Role | None) -> None:
    """Refuse a change that would leave the project without an admin, or demote the owner of a
    personal project (its owner is always its admin)."""
    if new_role == Role.ADMIN or state.members[email].role != Role.ADMIN.value:
        return
    project = state.project
    if project.personal and email == project.creator:
        raise Conflict(
            "The owner of a personal project is always its admin",
            "add other members to share it, or create a project for the team",
        )
    admins = [e for e, grant in state.members.items() if grant.role == Role.ADMIN.value]
    if admins == [email]:
        raise Conflict(
            "The last admin cannot leave or be demoted",
            "make another member admin first",
        )


def _grant_view(grant: Grant) -> dict[str, str]:
    return {"role": grant.role, "added_by": grant.added_by, "added_at": grant.added_at}


__all__ = ["ProjectService", "personal_project_id", "project_not_found", "record_operation"]
