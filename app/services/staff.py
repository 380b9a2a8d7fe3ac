"""Staff accounts: people at the counter, each scoped to stores, signing in with a password.

Passwords are kept only as argon2id hashes. Refused sign-ins are rows (SignInFailure), so the
rate limit holds across every app process: at most max_failures refusals per user name in the
window, and a few times that per address (a store's tablets share one address; one address
trying many names is still limited). A session names its account and the account's session
epoch; a new password, a deactivation or a sign-out raises the epoch and so ends every session.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, selectinload

from app.domain.access import Principal
from app.domain.errors import AlreadyExists, DomainError, InvalidInput, NotFound
from app.models import Location
from app.models_pickup import SignInFailure, StaffUser
from app.services import catalog

USERNAME = re.compile(r"[a-z0-9._-]{3,64}")
PASSWORD_MIN = 10
# Longer passwords are refused: hashing megabytes on every try would be a cheap way to load a worker.
PASSWORD_MAX = 1024
# Per address, this many times the per-name limit: the staff of one store share its address.
ADDRESS_FACTOR = 4
_hasher = PasswordHasher()  # argon2id, RFC 9106's low-memory profile


@cache
def _dummy_hash() -> str:
    # An unknown name is checked against this, so it costs what a wrong password costs.
    return _hasher.hash("not a password anyone has")


class SignInRefused(DomainError):
    """The name or the password is wrong, or the account is disabled; never says which."""

    code = "sign_in_refused"
    kind = "unauthorized"


class TooManyAttempts(DomainError):
    """Too many refused sign-ins for this name or from this address in the window."""

    code = "too_many_attempts"
    kind = "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class StaffUserView:
    """What every surface shows of an account (never its password)."""

    username: str
    display_name: str
    active: bool
    locations: Sequence[str]
    created_at: datetime
    updated_at: datetime


def _view(user: StaffUser) -> StaffUserView:
    return StaffUserView(
        username=user.username,
        display_name=user.display_name,
        active=user.active,
        locations=[loc.code for loc in user.locations],
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput(f"{field}: {message}", [{"field": field, "message": message}])


def _check_username(username: str) -> None:
    if not USERNAME.fullmatch(username):
        raise _invalid("username", "use 3 to 64 of a-z, 0-9 and . _ -")


def _hash_password(password: str) -> str:
    if len(password) < PASSWORD_MIN:
        raise _invalid("password", f"use at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise _invalid("password", f"use at most {PASSWORD_MAX} characters")
    return _hasher.hash(password)


def _stores(session: Session, codes: Sequence[str]) -> list[Location]:
    if not codes:
        raise _invalid("locations", "give at least one store")
    ids = catalog.location_ids(session, codes, field="locations")
    found = list(
        session.scalars(select(Location).where(Location.id.in_(ids.values())).order_by(Location.code))
    )
    not_stores = [loc.code for loc in found if loc.kind != "store"]
    if not_stores:
        raise _invalid("locations", f"not a store: {', '.join(not_stores)}")
    return found


def _user(session: Session, username: str) -> StaffUser:
    user = session.scalar(
        select(StaffUser).where(StaffUser.username == username).options(selectinload(StaffUser.locations))
    )
    if user is None:
        raise NotFound(f"no staff user {username!r}", username=username)
    return user


def create_user(
    session: Session, *, username: str, display_name: str, password: str, location_codes: Sequence[str]
) -> StaffUserView:
    """Make an account at its stores; the name is unique, the password at least 10 characters."""
    _check_username(username)
    if not display_name.strip():
        raise _invalid("display_name", "give a name")
    stores = _stores(session, location_codes)
    if session.scalar(select(StaffUser.id).where(StaffUser.username == username)) is not None:
        raise AlreadyExists(f"staff user {username!r} exists", username=username)
    user = StaffUser(
        username=username,
        display_name=display_name,
        password_hash=_hash_password(password),
        active=True,
        session_epoch=0,
    )
    user.locations = stores
    session.add(user)
    session.flush()
    return _view(user)


def update_user(session: Session, username: str, changes: dict[str, Any]) -> StaffUserView:
    """Change name, stores, active or password; a new password or a deactivation ends its sessions."""
    user = _user(session, username)
    if "display_name" in changes and changes["display_name"] is not None:
        if not str(changes["display_name"]).strip():
            raise _invalid("display_name", "give a name")
        user.display_name = changes["display_name"]
    if changes.get("locations") is not None:
        user.locations = _stores(session, changes["locations"])
    if changes.get("password") is not None:
        user.password_hash = _hash_password(changes["password"])
        user.session_epoch += 1
    if changes.get("active") is not None and bool(changes["active"]) != user.active:
        user.active = bool(changes["active"])
        if not user.active:
            user.session_epoch += 1
    session.flush()
    return _view(user)


def end_sessions(session: Session, user_id: int) -> None:
    """End every session of an account (sign-out: a copied cookie dies with the one signed out)."""
    user = session.get(StaffUser, user_id)
    if user is not None:
        user.session_epoch += 1


def get_user(session: Session, username: str) -> StaffUserView:
    """One account, or NotFound."""
    return _view(_user(session, username))


def list_users(session: Session) -> list[StaffUserView]:
    """Every account by user name."""
    users = session.scalars(
        select(StaffUser).options(selectinload(StaffUser.locations)).order_by(StaffUser.username)
    )
    return [_view(u) for u in users]


def _retry_after(
    session: Session, column: Any, value: str, since: datetime, limit: int, now: datetime, window_s: int
) -> int | None:
    """Seconds until this name's (or address's) refusals fall under limit; None when under it now."""
    recent = select(SignInFailure.at).where(column == value, SignInFailure.at > since)
    count = session.scalar(select(func.count()).select_from(recent.subquery())) or 0
    if count < limit:
        return None
    # The refusal whose ageing out brings the count under the limit.
    pivot = session.scalar(recent.order_by(SignInFailure.at).offset(count - limit).limit(1))
    if pivot is None:
        return window_s
    return max(1, math.ceil((pivot + timedelta(seconds=window_s) - now).total_seconds()))


def authenticate(
    session: Session,
    username: str,
    password: str,
    *,
    remote_addr: str,
    now: datetime,
    max_failures: int,
    window_s: int,
) -> StaffUser:
    """The account for a name and password, or raise SignInRefused (counted) or TooManyAttempts.

    A refusal adds its SignInFailure to the session before raising: the caller commits the unit
    of work anyway (catch the refusal inside it), or the rate limit would never see it. An
    unknown name, a disabled account and a wrong password are refused alike, and cost alike.
    """
    name = username.strip().lower()[:64]
    addr = (remote_addr or "unknown")[:64]
    since = now - timedelta(seconds=window_s)
    waits = [
        _retry_after(session, SignInFailure.username, name, since, max_failures, now, window_s),
        _retry_after(
            session, SignInFailure.remote_addr, addr, since, max_failures * ADDRESS_FACTOR, now, window_s
        ),
    ]
    if any(w is not None for w in waits):
        wait = max(w for w in waits if w is not None)
        raise TooManyAttempts("too many refused sign-ins; try again later", retry_after_s=wait)

    user = session.scalar(
        select(StaffUser).where(StaffUser.username == name).options(selectinload(StaffUser.locations))
    )
    ok = False
    if len(password) <= PASSWORD_MAX:
        try:
            ok = _hasher.verify(user.password_hash if user is not None else _dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            ok = False
    if user is None or not user.active or not ok:
        session.add(SignInFailure(username=name, remote_addr=addr, at=now))
        # Old refusals of this address are no use to the limit any more.
        session.execute(
            delete(SignInFailure).where(SignInFailure.remote_addr == addr, SignInFailure.at <= since)
        )
        raise SignInRefused("user name or password is wrong")

    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    session.execute(delete(SignInFailure).where(SignInFailure.username == name, SignInFailure.at <= since))
    return user


def principal_for(session: Session, user_id: int, epoch: int) -> Principal | None:
    """The Principal of a session naming this account and epoch; None if gone, disabled or ended."""
    user = session.scalar(
        select(StaffUser).where(StaffUser.id == user_id).options(selectinload(StaffUser.locations))
    )
    if user is None or not user.active or user.session_epoch != epoch:
        return None
    return Principal(
        key_id=None,
        name=user.display_name,
        role="staff",
        location_ids=frozenset(loc.id for loc in user.locations),
        location_codes=tuple(sorted(loc.code for loc in user.locations)),
        user_id=user.id,
    )
