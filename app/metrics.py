"""The service's Prometheus metrics, one definition each (no web framework: services count too)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter("omnistock_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "omnistock_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
LEDGER_MOVEMENTS = Counter("omnistock_ledger_movements_total", "Ledger movements recorded", ["kind"])
ORDERS = Counter(
    "omnistock_orders_total",
    "Order requests by channel and outcome (placed, replayed, or the refusal's problem code)",
    ["channel", "outcome"],
)
ORDER_ATTEMPTS = Histogram(
    "omnistock_order_attempts",
    "Routing attempts an order request took (more than 1: it lost reservation races and re-routed)",
    buckets=(1, 2, 3, 4, 5, 8),
)
