"""Order benchmark for omnistock: POST /api/v1/orders over HTTP against a bare-SQL baseline.

The script builds a scratch PostgreSQL database (omnistock_bench_orders). It migrates it, seeds
the scaled demo network (1 warehouse + 19 stores, 10,000 SKUs), starts gunicorn and measures:

A. POST /api/v1/orders with 1-line, 3-line and hot-SKU orders, at 1, 16 and 64 clients. Each
   cell runs for a fixed time after a short warm-up.
B. The hot-SKU oversell check: units sold against the stock given, and availability afterwards.
C. A bare-SQL baseline through psycopg on the same database (no Flask, no SQLAlchemy). It runs
   the service's reservation statements, then its effect is undone with compensating releases.
D. Key ratios with their targets. The targets are shown, not asserted.
E. Machine info.

Optionally it also profiles a 3-line load in one gunicorn worker with pyinstrument, as
diagnostics. The profile goes to a separate file and is not part of the table.

It prints a fixed-width table and writes the same figures as JSON to
bench/results/orders-<timestamp>.json.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python bench/bench_orders.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import psycopg
import requests

try:
    from bench import _common
except ImportError:  # run as a script without the repository root on sys.path
    import _common  # type: ignore[no-redef]

from _common_names import *  # noqa: F403  (placeholder, replaced below)
