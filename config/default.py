"""Defaults for every deployment; override with OMNISTOCK_* environment variables."""

# SQLAlchemy URL. The embedded default is a SQLite file in the instance folder;
# production sets OMNISTOCK_DATABASE_URL=postgresql+psycopg://user@host/db.
DATABASE_URL = "sqlite:///{instance}/omnistock.db"
DATABASE_POOL_SIZE = 10
DATABASE_MAX_OVERFLOW = 10
DATABASE_ECHO = False
# No ping per connection checkout (a round trip per request): a connection the server dropped
# fails its first statement, is discarded, and the unit of work runs again on a fresh one
# (never after a failed COMMIT). Turn the ping on for networks that silently drop idle TCP.
DATABASE_POOL_PRE_PING = False
# Replace pooled connections older than this (seconds).
DATABASE_POOL_RECYCLE_S = 1800
# Seconds a SQLite writer waits for the file lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 30

# Signs session cookies for the browser pages. None: a random key is kept in the
# instance folder (fine for one machine; set it explicitly for several).
SECRET_KEY = None

# Largest request body accepted (bytes): a 1,000-movement batch is ~150 KiB.
MAX_CONTENT_LENGTH = 2 * 1024 * 1024

# Largest stock file uploaded to a CSV feed (POST /api/v1/feeds/{code}/upload): a million rows
# are about 25 MB.
MAX_UPLOAD_BYTES = 64 * 1024 * 1024

# Largest movement batch and SKU list per request.
MAX_BATCH_MOVEMENTS = 5000
MAX_AVAILABILITY_SKUS = 200
PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000

# Seconds an authenticated API key stays cached in a process; revocation takes at most this long.
API_KEY_CACHE_SECONDS = 30

LOG_LEVEL = "INFO"
# json for machines, text for a terminal.
LOG_FORMAT = "json"

# Routing: criteria order, bound on split shipments, pickup shortfall policy (transfer|refuse).
ROUTING_CRITERIA = "distance,priority,capacity,depth"
ROUTING_MAX_SHIPMENTS = 3
ROUTING_PICKUP_SHORTFALL = "transfer"
# Re-route attempts after losing a reservation race before refusing.
ROUTING_MAX_ATTEMPTS = 3

# Webhook deliveries (the deliver-webhooks job). Each attempt waits at most WEBHOOK_TIMEOUT_S; a
# run claims up to WEBHOOK_BATCH due deliveries for WEBHOOK_CLAIM_S (no other runner sends them
# meanwhile) and stops taking new ones after WEBHOOK_BUDGET_S, below the job's 300 s lease.
WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_BATCH = 200
WEBHOOK_CLAIM_S = 600
WEBHOOK_BUDGET_S = 240
# A subscription that fails this many times in one run is sent nothing more in that run (its other
# deliveries wait for the next), so one slow or dead endpoint cannot hold up the rest.
WEBHOOK_FAILURES_PER_RUN = 3
# ...and its other deliveries wait this long, so the next runs claim the other subscriptions' first.
WEBHOOK_REST_S = 60

# Retention (the prune-history job, hourly). Events older than this that every active webhook
# subscription has passed and no delivery still owes are deleted with their finished deliveries;
# a subscription disabled for longer than this does not get the pruned events when revived.
EVENT_RETENTION_DAYS = 30
# Job runs (deliver-webhooks alone records one every 5 s).
JOB_RUN_RETENTION_DAYS = 14

# The demo's outside systems: a Square POS and a Shopify shop served by the vendor fakes inside the
# serving process (under /demo-vendors/), configured as feeds at start. Never on in production.
DEMO_VENDORS = False

# Click-and-collect at the counter. A pickup is locked for PICKUP_LOCK_MINUTES after
# PICKUP_MAX_TRIES wrong codes (counted across every app process, in the database).
PICKUP_MAX_TRIES = 5
PICKUP_LOCK_MINUTES = 15
# Seconds between the pickup queue page's own refreshes.
PICKUP_REFRESH_S = 30

# Staff sign-in: a signed session cookie that expires after SESSION_HOURS; at most
# SIGN_IN_MAX_FAILURES refused sign-ins per user name (four times as many per address: a store's
# tablets share one) in SIGN_IN_WINDOW_S.
# SESSION_COOKIE_SECURE: set true behind TLS (the embedded default serves plain HTTP on 127.0.0.1).
SESSION_HOURS = 12
SESSION_COOKIE_SECURE = False
SIGN_IN_MAX_FAILURES = 5
SIGN_IN_WINDOW_S = 900
