"""Click-and-collect persistence: staff accounts scoped to stores, failed sign-ins (for the rate
limit, shared by every app process), and where a SKU sits in a store (the pick list's bin hint).

Passwords are stored only as argon2 hashes; a session names its account and the account's
session epoch, so raising the epoch ends every session it has.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, UTCDateTime, utcnow
from app.models import BigId, Location


class StaffUser(Base):
    """A person at the counter: signs in to the pickup screen and acts only at their stores."""

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, server_default=true())
    session_epoch: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    locations: Mapped[list[Location]] = relationship(secondary="staff_user_locations", order_by="Location.code")


class StaffUserLocation(Base):
    """A store a staff account may see and act at."""

    __tablename__ = "staff_user_locations"

    staff_user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"), primary_key=True)


class SignInFailure(Base):
    """One refused sign-in, by the name tried and the address it came from (rate limit window)."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (
        Index("ix_sign_in_failures_username_at", "username", "at"),
        Index("ix_sign_in_failures_remote_at", "remote_addr", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    remote_addr: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class SkuBin(Base):
    """Where a SKU is kept in a store (a bin or shelf), shown on the pick list when known."""

    __tablename__ = "sku_bins"

    sku_id: Mapped[int] = mapped_column(ForeignKey("skus.id", ondelete="CASCADE"), primary_key=True)
    location_id: Mapped[int] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"), primary_key=True)
    bin: Mapped[str] = mapped_column(String(64))
