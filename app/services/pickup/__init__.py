"""Click-and-collect at the counter: promises, the queue, the pickup code, hand-over, not-found
and the reminder/expiry job. Services take a session and never commit."""
