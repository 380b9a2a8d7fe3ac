"""The API answers what /api/openapi.json says, for any input a client can send (schemathesis).

Every operation is fuzzed through the app's WSGI interface with each role's key (storefront,
staff of ST-A, ops) and with none, on SQLite and PostgreSQL, against data that exists
(tests/conftest.py StoreWorld): schemathesis's coverage phase (boundaries, wrong types, missing
and extra fields) and its fuzzing phase (positive and negative data). Checks: no server error,
the status code is documented, the content type is the documented one, the body matches the
documented schema. All failures of a run are collected and reported together.

CI runs a fixed seed, derandomised, with OMNISTOCK_FUZZ_EXAMPLES (default 4) examples per
operation in the fuzzing phase; nothing is written to disk. A longer local run:
    OMNISTOCK_FUZZ_EXAMPLES=200 OMNISTOCK_FUZZ_SEED=$RANDOM \
        .venv/bin/python -m pytest tests/integration/test_api_contract.py -q
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import strategies as st
from schemathesis.engine import Status, events
from sqlalchemy import select

from app.db import read_only
from app.models import Fulfilment, Location, Order, Sku, WebhookSubscription
from tests.conftest import StoreWorld

EXAMPLES = int(os.environ.get("OMNISTOCK_FUZZ_EXAMPLES", "4"))
SEED = int(os.environ.get("OMNISTOCK_FUZZ_SEED", "20240808"))
# The key each role's run sends; staff are scoped to ST-A, which holds most of the data.
ROLE_CALLERS = {"storefront": "storefront", "staff": "staff_a", "ops": "ops", "none": "none"}
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance")  # fmt: skip
V1 = "/api/v1"


@dataclass(frozen=True)
class Finding:
    """One distinct contract failure: where, which check, what was sent and what came back."""

    operation: str
    check: str
    title: str
    status: int | None
    request: str
    answer: str

    def key(self) -> tuple[str, str, str, int | None]:
        return (self.operation, self.check, self.title, self.status)

    def __str__(self) -> str:
        return (f"{self.operation} [{self.check}] {self.title}: answered {self.status}\n"
                f"    sent {self.request}\n    got  {self.answer}")  # fmt: skip


# Inputs that broke this API before (issue 8): NUL, lone surrogates (JSON bodies only: a URL
# cannot carry one), and numbers past 32- and 64-bit columns. Each generated body or query may
# have one of its values swapped for one of these, so a few examples per operation reach them.
HOSTILE_TEXT = ("\x00", "a\x00b", "\ud800", "x\udfffy")
HOSTILE_QUERY_TEXT = ("\x00", "a\x00b")
HOSTILE_INTEGERS = (2**31, 2**63, -(2**63) - 1, 2528351101594470)


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path, value


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], rest, new)}
    return [replaced(item, rest, new) if i == head else item for i, item in enumerate(value)]


def with_hostile_value(value: Any, texts: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """The value as generated, or with one string or integer in it swapped for a hostile one."""
    spots = [(path, texts if isinstance(leaf, str) else HOSTILE_INTEGERS)
             for path, leaf in leaves(value)
             if isinstance(leaf, str) or (isinstance(leaf, int) and not isinstance(leaf, bool))]  # fmt: skip
    if not spots:
        return st.just(value)
    swapped = st.sampled_from(spots).flatmap(
        lambda spot: st.sampled_from(spot[1]).map(lambda new: replaced(value, spot[0], new))
    )
    return st.one_of(st.just(value), swapped)


def contract_config(key: str, refused: set[str]) -> schemathesis.Config:
    """A bounded, reproducible run: fixed seed, derandomised, no example database, no cache.

    Operations the caller's role may not call are answered by the guard before any input is
    read, so they get the fuzzing phase only (their 401/403 is still checked), not the coverage
    phase's thousands of input variants.
    """
    guarded = [{"include-name": sorted(refused), "phases": {"coverage": {"enabled": False}}}] if refused else []
    return schemathesis.Config.from_dict(
        {
            "operations": guarded,
            "seed": SEED,
            **({"headers": {"Authorization": f"Bearer {key}"}} if key else {}),
            "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none", "mode": "all"},
            "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
                       "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "cache": {"enabled": False},
            "workers": 1,
            # Go on past an operation's first failure, so one broken rule does not hide another.
            "continue-on-failure": True,
        }
    )  # fmt: skip


def known_values(app: Flask, world: StoreWorld) -> dict[str, list[Any]]:
    """Ids and codes that exist, so generated paths reach real objects as well as missing ones."""
    with read_only(app.extensions["session_factory"]) as session:
        return {
            "order": list(session.scalars(select(Order.id).order_by(Order.id))),
            "fulfilment": list(session.scalars(select(Fulfilment.id).order_by(Fulfilment.id))),
            "webhook": list(session.scalars(select(WebhookSubscription.id).order_by(WebhookSubscription.id))),
            "location": list(session.scalars(select(Location.code).order_by(Location.code))),
            "sku": list(session.scalars(select(Sku.code).order_by(Sku.code))),
            "customer": [world.customer],
        }


def path_sources(path: str) -> dict[str, str]:
    """Which known values fit each path parameter of an operation."""
    if path.startswith(f"{V1}/stock/levels/"):
        return {"sku": "sku", "location": "location"}
    for prefix, source in [("/orders/", "order"), ("/fulfilments/", "fulfilment"), ("/webhooks/", "webhook"),
                           ("/locations/", "location"), ("/skus/", "sku"), ("/customers/", "customer")]:  # fmt: skip
        if path.startswith(V1 + prefix):
            return {"id": source, "code": source, "customer_ref": source}
    return {}


def excerpt(data: bytes | str | None, limit: int = 300) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in " ".join(text.split()))
    return text if len(text) <= limit else text[:limit] + "..."


def findings_of(event: events.ScenarioFinished) -> Iterator[Finding]:
    recorder = event.recorder
    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.status != Status.FAILURE or check.failure_info is None:
                continue
            failure = check.failure_info.failure
            interaction = recorder.interactions.get(case_id)
            response = interaction.response if interaction is not None else None
            if check.name == "status_code_conformance" and response is not None and response.status_code >= 500:
                continue  # not_a_server_error reports it already
            request = interaction.request if interaction is not None else None
            sent = f"{request.method} {request.uri} {excerpt(request.body, 200)}" if request else "?"
            got = (f"{response.headers.get('content-type', ['?'])[0]} {excerpt(response.content)}"
                   if response is not None else "no response")  # fmt: skip
            yield Finding(
                operation=recorder.label,
                check=check.name,
                title=failure.title,
                status=response.status_code if response is not None else None,
                request=sent,
                answer=got,
            )


def run_contract(app: Flask, world: StoreWorld, role: str) -> tuple[list[Finding], list[str], Counter[str]]:
    """Fuzz every operation as one role: distinct findings, engine errors, requests per operation."""
    refused = {label for label, allowed in admitted_roles(app).items() if role not in allowed}
    config = contract_config(world.keys[ROLE_CALLERS[role]], refused)
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app, config=config)
    values = known_values(app, world)

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
        if not path_parameters:
            return st.just(path_parameters)
        sources = path_sources(context.operation.path if context.operation else "")
        real = {name: values[sources[name]] for name in path_parameters if name in sources and values[sources[name]]}
        if not real:
            return st.just(path_parameters)
        known = st.fixed_dictionaries({name: st.sampled_from(options) for name, options in real.items()})
        return st.one_of(st.just(path_parameters), known.map(lambda chosen: {**path_parameters, **chosen}))

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
        if isinstance(body, str):
            # A text body (an uploaded stock file) is sent as UTF-8, which cannot carry a lone
            # surrogate; kept short, since a long one is only a slower way to be refused.
            return with_hostile_value(body[:2000], HOSTILE_QUERY_TEXT)
        return with_hostile_value(body, HOSTILE_TEXT)

    @schema.hook
    def flatmap_query(context: Any, query: dict[str, Any] | None) -> st.SearchStrategy[Any]:
        return with_hostile_value(query, HOSTILE_QUERY_TEXT) if query else st.just(query)

    findings: dict[tuple[str, str, str, int | None], Finding] = {}
    errors: list[str] = []
    requests: Counter[str] = Counter()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            requests[event.recorder.label] += len(event.recorder.interactions)
            if event.status == Status.FAILURE:
                for finding in findings_of(event):
                    findings.setdefault(finding.key(), finding)
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            label = getattr(event, "label", "run")
            errors.append(f"{label}: {type(event.value).__name__}: {excerpt(str(event.value), 500)}")
    return sorted(findings.values(), key=Finding.key), errors, requests


def documented_operations(app: Flask) -> set[str]:
    doc = app.test_client().get("/api/openapi.json").json
    return {f"{method.upper()} {path}" for path, item in doc["paths"].items() for method in item}


def admitted_roles(app: Flask) -> dict[str, frozenset[str]]:
    """Each /api/v1 operation (as schemathesis labels it) and the roles its view declares."""
    out = {}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(V1 + "/"):
            path = rule.rule
            for arg in rule.arguments:
                path = path.replace(f"<int:{arg}>", f"{{{arg}}}").replace(f"<{arg}>", f"{{{arg}}}")
            allowed = getattr(app.view_functions[rule.endpoint], "roles", frozenset())
            out |= {f"{m} {path}": allowed for m in (rule.methods or set()) - {"HEAD", "OPTIONS"}}
    return out


def served_operations(app: Flask) -> set[str]:
    return set(admitted_roles(app))


def test_every_served_route_is_documented(app: Flask) -> None:
    """The fuzz covers what the OpenAPI document lists, so every /api/v1 route must be in it."""
    served = served_operations(app)
    assert served <= documented_operations(app), sorted(served - documented_operations(app))


@pytest.fixture
def production_key_cache(app: Flask) -> Iterator[None]:
    """Keys cached per process as in production (the test profile turns it off): the fuzz sends
    thousands of requests with the same few keys, and a lookup each was a fifth of its time."""
    from app.web.auth import ApiKeyResolver

    resolver = next(r for r in app.extensions["omnistock.principal_resolvers"]["api"] if isinstance(r, ApiKeyResolver))
    before = resolver._ttl
    resolver._ttl = 30.0
    try:
        yield
    finally:
        resolver._ttl = before
        resolver._cache = type(resolver._cache)()


# Every role on PostgreSQL; on SQLite the ops role alone. The other roles differ from ops only in
# which operations the guard refuses before any input is read, and ops is admitted to every write:
# SQLite's own limits are met there.
CONTRACT_RUNS = [("sqlite", "ops"), *(("postgresql", role) for role in ROLE_CALLERS)]


@pytest.mark.parametrize(("backend", "role"), CONTRACT_RUNS)
@pytest.mark.usefixtures("production_key_cache")
def test_every_operation_keeps_the_contract(app: Flask, store_world: StoreWorld, role: str) -> None:
    """Whatever is sent, as whoever: no 5xx, and status, content type and body are the documented ones."""
    findings, errors, requests = run_contract(app, store_world, role)
    untested = sorted(op for op in served_operations(app) if not requests[op])
    report = [f"{len(findings)} distinct contract failures as {role}:", *map(str, findings)]
    if errors:
        report += [f"{len(errors)} errors while fuzzing (an exception escaped the app?):", *errors]
    if untested:
        report += [f"operations that got no request: {untested}"]
    assert not findings and not errors and not untested, "\n".join(report)
