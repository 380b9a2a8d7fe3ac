"""The scheduler: its own process in production (`flask sync run-scheduler`), a thread in the demo."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)


def start_background(app: Flask) -> Any:
    """Start the scheduled jobs in a background thread of this process (embedded setup only)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.start()
    log.info("embedded scheduler started", extra={"jobs": [j.id for j in scheduler.get_jobs()]})
    return scheduler
