"""API keys: shown once at creation, kept only as a SHA-256 digest, each with one role."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.db import utcnow
from app.domain.access import Principal
from app.domain.errors import InvalidInput, NotFound
from app.models import ApiKey
from app.services import catalog

ROLES = ("storefront", "staff", "ops")
KEY_PREFIX = "osk"


def _digest(secret: str) -> str:
    # Keys are 190+ bits of randomness: a fast hash is enough; a slow KDF only costs latency.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    session: Session, *, role: str, name: str, locations: Sequence[str] = ()
) -> tuple[ApiKey, str]:
    """Make a key; the plain key is returned here and never again."""
    if role not in ROLES:
        raise InvalidInput("unknown role", [{"field": "role", "message": f"one of {', '.join(ROLES)}"}])
    if role == "staff" and not locations:
        raise InvalidInput(
            "a staff key is scoped to locations",
            [{"field": "location", "message": "give at least one location"}],
        )
    ids = catalog.location_ids(session, locations) if locations else {}
    prefix = secrets.token_hex(6)
    plain = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(name=name, prefix=prefix, secret_hash=_digest(plain), role=role)
    session.add(key)
    session.flush()
    if ids:
        key.locations = [catalog.get_location(session, code) for code in sorted(ids)]
        session.flush()
    return key, plain


def authenticate(session: Session, plain: str) -> Principal | None:
    """The principal for a presented key, or None if unknown, malformed or revoked."""
    parts = plain.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    key = session.scalar(
        select(ApiKey).where(ApiKey.prefix == parts[1]).options(selectinload(ApiKey.locations))
    )
    if key is None or key.revoked_at is not None:
        return None
    if not hmac.compare_digest(key.secret_hash, _digest(plain)):
        return None
    return Principal(
        key_id=key.id,
        name=key.name,
        role=key.role,
        location_ids=frozenset(loc.id for loc in key.locations),
        location_codes=tuple(loc.code for loc in key.locations),
    )


def revoke(session: Session, key_id: int) -> ApiKey:
    """Revoke a key; it stops working within the key cache time."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no key {key_id}", key=key_id)
    key.revoked_at = key.revoked_at or utcnow()
    return key


def list_keys(session: Session) -> list[ApiKey]:
    """Every key (never its secret), oldest first."""
    return list(session.scalars(select(ApiKey).options(selectinload(ApiKey.locations)).order_by(ApiKey.id)))
