"""Staff accounts API (ops): create, list, read and change the people who sign in to the pages."""

from __future__ import annotations

from flask_openapi3 import APIBlueprint, Tag

from app.db import read_only, unit_of_work
from app.schemas import StaffUserCreate, StaffUserList, StaffUserOut, StaffUserPath, StaffUserUpdate
from app.services import staff
from app.web import session_factory
from app.web.auth import roles
from app.web.openapi import API_PREFIX, SECURITY
from app.web.respond import READ_PROBLEMS, WRITE_PROBLEMS, ApiResult, respond

bp = APIBlueprint(
    "api_staff", __name__, url_prefix=API_PREFIX, abp_tags=[Tag(name="staff")], abp_security=SECURITY
)


@bp.post("/staff-users", responses={201: StaffUserOut, **WRITE_PROBLEMS})
@roles("ops")
def create_staff_user(body: StaffUserCreate) -> ApiResult:
    """Create a staff account at its stores (the password is never answered)."""
    with unit_of_work(session_factory()) as session:
        user = staff.create_user(
            session,
            username=body.username,
            display_name=body.display_name,
            password=body.password,
            location_codes=body.locations,
        )
    return respond(StaffUserOut, user, 201)


@bp.get("/staff-users", responses={200: StaffUserList, **READ_PROBLEMS})
@roles("ops")
def list_staff_users() -> ApiResult:
    """Every staff account by user name."""
    with read_only(session_factory()) as session:
        return respond(StaffUserList, {"items": staff.list_users(session)})


@bp.get("/staff-users/<username>", responses={200: StaffUserOut, **READ_PROBLEMS})
@roles("ops")
def get_staff_user(path: StaffUserPath) -> ApiResult:
    """One staff account."""
    with read_only(session_factory()) as session:
        return respond(StaffUserOut, staff.get_user(session, path.username))


@bp.patch("/staff-users/<username>", responses={200: StaffUserOut, **WRITE_PROBLEMS})
@roles("ops")
def update_staff_user(path: StaffUserPath, body: StaffUserUpdate) -> ApiResult:
    """Change a staff account; a new password or active=false ends its sessions."""
    with unit_of_work(session_factory()) as session:
        user = staff.update_user(session, path.username, body.model_dump(exclude_unset=True))
    return respond(StaffUserOut, user)
