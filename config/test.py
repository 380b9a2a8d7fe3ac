"""Test profile: quiet logs, small pages so pagination is exercised."""

LOG_LEVEL = "WARNING"
LOG_FORMAT = "text"
PAGE_SIZE_DEFAULT = 50
API_KEY_CACHE_SECONDS = 0
