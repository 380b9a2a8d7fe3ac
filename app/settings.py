"""One config loader for the web app, the scheduler and Alembic: defaults, then env, then overrides."""

from __future__ import annotations

import importlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV_PREFIX = "OMNISTOCK_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    """A configuration value is missing or malformed."""


def _defaults(profile: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in ["config.default"] + (["config.test"] if profile == "test" else []):
        module = importlib.import_module(name)
        values.update({k: getattr(module, k) for k in dir(module) if k.isupper()})
    return values


def _coerce(raw: str, default: Any) -> Any:
    # Environment values are strings; give them the type of the default they replace.
    if isinstance(default, bool):
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"expected a boolean, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError as exc:
            raise ConfigError(f"expected an integer, got {raw!r}") from exc
    return raw


def load_config(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Merge config/default.py, OMNISTOCK_* variables and overrides, in that order."""
    env = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    values = _defaults(overrides.get("PROFILE") or env.get(ENV_PREFIX + "PROFILE"))
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :]
        try:
            values[key] = _coerce(raw, values.get(key))
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from exc
    values.update(overrides)
    instance = Path(values.get("INSTANCE_PATH") or PROJECT_ROOT / "instance")
    values["INSTANCE_PATH"] = str(instance)
    values["DATABASE_URL"] = str(values["DATABASE_URL"]).replace("{instance}", str(instance))
    if str(values["ROUTING_PICKUP_SHORTFALL"]) not in {"transfer", "refuse"}:
        raise ConfigError("ROUTING_PICKUP_SHORTFALL must be 'transfer' or 'refuse'")
    return values


def ensure_secret_key(values: dict[str, Any]) -> None:
    """Give the app a stable signing key: configured, or kept in the instance folder."""
    if values.get("SECRET_KEY"):
        return
    path = Path(values["INSTANCE_PATH"]) / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    values["SECRET_KEY"] = path.read_text().strip()
