"""/api/v1 project routes: projects, their members and groups, and their operations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api_service.deps import ProjectId, User
from api_service.json_response import OrjsonResponse
from api_service.routes.queries import OperationsQuery, PageQuery
from api_service.routes.responses import API_PREFIX, ERRORS
from api_service.routing import ApiRoute
from cls_core.services.projects import member_email
from shared_models.projects import (
    GroupList,
    GroupMember,
    GroupName,
    Member,
    MemberList,
    OperationList,
    Project,
    ProjectCreate,
    ProjectList,
    ProjectPatch,
    RoleGrant,
)

router = APIRouter(prefix=API_PREFIX, tags=["projects"], responses=ERRORS, route_class=ApiRoute)

Email = Annotated[str, Path(alias="email", description="The member's email")]
Group = Annotated[GroupName, Path(alias="group", description="A group the gateway names")]


@router.post("/projects", status_code=201, response_model=Project)
async def create(user: User, body: ProjectCreate) -> OrjsonResponse:
    """Create a project; you are its first admin. Names are unique among your projects."""
    project = await user.projects.create(user.caller, body)
    location = {"Location": f"/api/v1/projects/{project['id']}"}
    return OrjsonResponse(project, status_code=201, headers=location)


@router.get("/projects", response_model=ProjectList)
async def list_projects(user: User, query: Annotated[PageQuery, Query()]) -> OrjsonResponse:
    """The projects you have a role in (as a member or through a group), your personal one
    first."""
    total, projects = await user.projects.list_for(user.caller, query.limit, query.offset)
    page = {"projects": projects, "total": total, "limit": query.limit, "offset": query.offset}
    return OrjsonResponse(page)


@router.get("/projects/{id}", response_model=Project)
async def get(user: User, project_id: ProjectId) -> OrjsonResponse:
    return OrjsonResponse(await user.projects.get(user.caller, project_id))


@router.patch("/projects/{id}", response_model=Project)
async def patch(user: User, project_id: ProjectId, body: ProjectPatch) -> OrjsonResponse:
    """Rename the project or change its description (an admin's call)."""
    return OrjsonResponse(await user.projects.patch(user.caller, project_id, body))


@router.delete("/projects/{id}", status_code=204, response_class=Response)
async def delete(user: User, project_id: ProjectId) -> Response:
    """Delete an empty project (an admin's call; a personal project is never deleted)."""
    await user.projects.delete(user.caller, project_id)
    return Response(status_code=204)


@router.get("/projects/{id}/members", response_model=MemberList)
async def members(user: User, project_id: ProjectId) -> OrjsonResponse:
    return OrjsonResponse({"members": await user.projects.members(user.caller, project_id)})


@router.put("/projects/{id}/members/{email}", response_model=Member)
async def set_member(
    user: User, project_id: ProjectId, email: Email, body: RoleGrant
) -> OrjsonResponse:
    """Add a member, or change their role (an admin's call). The last admin cannot be
    demoted."""
    member = await user.projects.set_member(user.caller, project_id, member_email(email), body.role)
    return OrjsonResponse(member)


@router.delete("/projects/{id}/members/{email}", status_code=204, response_class=Response)
async def remove_member(user: User, project_id: ProjectId, email: Email) -> Response:
    """Remove a member (an admin's call), or leave (your own email). The last admin cannot
    leave."""
    await user.projects.remove_member(user.caller, project_id, member_email(email))
    return Response(status_code=204)


@router.get("/projects/{id}/groups", response_model=GroupList)
async def groups(user: User, project_id: ProjectId) -> OrjsonResponse:
    return OrjsonResponse({"groups": await user.projects.groups(user.caller, project_id)})


@router.put("/projects/{id}/groups/{group}", response_model=GroupMember)
async def set_group(
    user: User, project_id: ProjectId, group: Group, body: RoleGrant
) -> OrjsonResponse:
    """Grant a role to everyone the gateway puts in ``group`` (CLS_GROUPS_HEADER)."""
    return OrjsonResponse(await user.projects.set_group(user.caller, project_id, group, body.role))


@router.delete("/projects/{id}/groups/{group}", status_code=204, response_class=Response)
async def remove_group(user: User, project_id: ProjectId, group: Group) -> Response:
    await user.projects.remove_group(user.caller, project_id, group)
    return Response(status_code=204)


@router.get("/projects/{id}/operations", response_model=OperationList)
async def operations(
    user: User, project_id: ProjectId, query: Annotated[OperationsQuery, Query()]
) -> OrjsonResponse:
    """The project's latest operations (membership changes, transfers), newest first, with
    who made each."""
    found = await user.projects.operations(user.caller, project_id, query.limit)
    return OrjsonResponse({"operations": found})
