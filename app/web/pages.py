"""Server-rendered pages: a PageBlueprint's requests answer errors as HTML pages, not problem+json.

Staff sign-in hooks in here later: a page blueprint authorises with
app.web.auth.authorise(page_resolvers()), the same Principal an API key gives.
"""

from __future__ import annotations

from flask import Blueprint


class PageBlueprint(Blueprint):
    """A blueprint of HTML pages (its errors, and 404s under its url_prefix, are HTML pages)."""

    serves_html = True
