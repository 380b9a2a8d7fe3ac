"""Staff sign-in and sign-out for the pages (the pickup screen); the API keeps its keys."""

from __future__ import annotations

import math

from flask import current_app, flash, redirect, render_template, request
from flask.typing import ResponseReturnValue

from app.db import unit_of_work, utcnow
from app.services import staff
from app.web import session_factory
from app.web.auth import session_principal, sign_in_session, sign_out_session
from app.web.pages import PageBlueprint, safe_next

bp = PageBlueprint("pages_auth", __name__)

WRONG = "User name or password is wrong."


def _form(status: int = 200, **context: object) -> tuple[str, int]:
    context.setdefault("next", safe_next(request.values.get("next")))
    context.setdefault("username", "")
    return render_template("signin.html", **context), status


@bp.get("/sign-in")
def sign_in() -> ResponseReturnValue:
    """The sign-in form; someone already signed in goes on to where they were going."""
    if session_principal() is not None:
        return redirect(safe_next(request.args.get("next")))
    return _form()


@bp.post("/sign-in")
def sign_in_post() -> ResponseReturnValue:
    """Check name and password; refused alike for any wrong part, rate-limited per name and address."""
    username = request.form.get("username", "").strip()[:200]
    password = request.form.get("password", "")
    errors = {}
    if not username:
        errors["username"] = "Enter your user name."
    if not password:
        errors["password"] = "Enter your password."  # noqa: S105 (a message, not a password)
    if errors:
        return _form(422, username=username, field_errors=errors)

    config = current_app.config
    signed: tuple[int, int] | None = None
    limited: staff.TooManyAttempts | None = None
    with unit_of_work(session_factory()) as session:
        # Refusals are caught inside the unit of work: the failure they record must be committed.
        try:
            user = staff.authenticate(
                session,
                username,
                password,
                remote_addr=request.remote_addr or "unknown",
                now=utcnow(),
                max_failures=int(config["SIGN_IN_MAX_FAILURES"]),
                window_s=int(config["SIGN_IN_WINDOW_S"]),
            )
            signed = (user.id, user.session_epoch)
        except staff.TooManyAttempts as exc:
            limited = exc
        except staff.SignInRefused:
            pass
    if limited is not None:
        minutes = max(1, math.ceil(limited.retry_after_s / 60))
        message = f"Too many attempts, try again in {minutes} minute{'s' if minutes != 1 else ''}."
        body, status = _form(429, username=username, error=message)
        return body, status, {"Retry-After": str(limited.retry_after_s)}
    if signed is None:
        return _form(401, username=username, error=WRONG)
    sign_in_session(*signed)
    return redirect(safe_next(request.form.get("next")), 303)


@bp.post("/sign-out")
def sign_out() -> ResponseReturnValue:
    """End the session (everywhere: a copy of the cookie stops working too) and show sign-in."""
    who = session_principal()
    if who is not None and who.user_id is not None:
        with unit_of_work(session_factory()) as session:
            staff.end_sessions(session, who.user_id)
    sign_out_session()
    flash("You are signed out.", "success")
    return redirect("/sign-in", 303)
