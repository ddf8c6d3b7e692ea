"""The HTTP API fuzzed from its own OpenAPI schema with schemathesis, logged in as an admin.

The service runs in this process (uvicorn on 127.0.0.1, the real app, SQLite, the
stand-in engine) with a few events and detections stored. For every operation of
``app.openapi()`` schemathesis generates requests: valid ones (positive mode), checked
with ``not_a_server_error`` and ``response_schema_conformance`` (every answer is one
the schema documents, with the documented body), and invalid ones (negative mode:
wrong types, missing fields, out-of-range values), which must be refused with a 4xx,
never a 500. Left out: the live feed (an endless stream), logging out and changing
one's own password (they end the session the run uses).

Prints how many requests were made per mode.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from dsp.records import BandHealth, Heartbeat
from dsp.wire import SenderStatus
from service.store import EventWrite
from tests.service.harness import LiveServer, detections, live_server, make_settings

EXCLUDED = {("GET", "/api/live"), ("POST", "/api/auth/logout"), ("POST", "/api/me/password")}
N_POSITIVE = 20  # examples per operation
N_NEGATIVE = 12


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(make_settings(tmp_path_factory.mktemp("schemathesis"))) as s:
        s.add_user("ada", "admin")
        store = s.services.store
        store.store_detections("A1-S1", "0123456789abcdef0123456789abcdef", detections(30))
        store.store_heartbeat("A1-S1", Heartbeat("A1-S1", 1.7e9, "running", bands=(BandHealth("gsm900", -42.0),)),
                              SenderStatus(n_pending=3))
        ids = [r.id for r in store.detections_after(0, 100)]
        for k, cell in enumerate(("A-1-03", "A-1-04", None)):
            record = {"event_id": f"E{k}", "t_start_s": 1.7e9 + k, "t_end_s": 1.7e9 + k + 3, "tech": "gsm",
                      "freq_hz": 902.4e6, "n_bursts": 10, "cell": cell, "zone": None if cell else "yard", "wing": "A",
                      "floor": 1, "confidence": 0.8, "candidates": [{"place": cell or "yard", "p": 0.8}],
                      "sensors": [{"sensor_id": "A1-S1", "rssi_dbm": -60.0, "n_bursts": 10}],
                      "place_kind": "cell" if cell else "yard", "priority": "alert" if cell else "low"}
            store.upsert_events([EventWrite(f"E{k}", record, ids[10 * k:10 * k + 10])])
        yield s


def _operations(server: LiveServer) -> list:
    schema = schemathesis.openapi.from_dict(server.app.openapi())
    out = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in EXCLUDED:
            out.append(operation)
    return out


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_api_never_answers_500_and_keeps_to_its_schema(server: LiveServer, mode: GenerationMode) -> None:
    operations = _operations(server)
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    n_without_negative = 0
    n_examples = N_POSITIVE if mode is GenerationMode.POSITIVE else N_NEGATIVE
    checks = [not_a_server_error, response_schema_conformance] if mode is GenerationMode.POSITIVE \
        else [not_a_server_error]
    for operation in operations:
        headers = server.login("ada")  # afresh: a PATCH of ada's own password ends her sessions
        label = f"{operation.method.upper()} {operation.path}"

        @settings(max_examples=n_examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: schemathesis.Case) -> None:
            response = case.call(base_url=server.url, headers=headers, timeout=10)  # noqa: B023 (called at once)
            statuses[response.status_code] += 1
            try:
                case.validate_response(response, checks=checks)
            except AssertionError as exc:  # collected: one report for every operation
                failures.append(f"{label}: {str(exc).splitlines()[0][:300]}"  # noqa: B023 (called at once)
                                f" -> {response.status_code} {response.text[:200]}")
                raise

        try:
            call()
        except AssertionError:
            pass  # recorded above; hypothesis re-raises the shrunk example
        except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
            n_without_negative += 1
    n = sum(statuses.values())
    print(f"\nschemathesis {mode.value}: {n} requests over {len(operations)} operations "
          f"({n_without_negative} without any invalid input to make); statuses {dict(sorted(statuses.items()))}")
    assert not failures, "\n".join(sorted(set(failures)))
    assert statuses.get(500, 0) == 0 and n >= len(operations) * 3


@pytest.mark.parametrize("odd", ["\\u0000", "\\ud800", "a\\udfff\\ud800b", "\\u202e", "%00"])
def test_odd_strings_in_bodies_and_paths_are_never_a_500(server: LiveServer, odd: str) -> None:
    """NUL and lone surrogates (valid JSON escapes, which Python decodes to strings no database takes)."""
    headers = {**server.login("ada"), "Content-Type": "application/json"}
    with server.client() as c:
        for method, url, body in (
                ("POST", "/api/auth/login", f'{{"username": "ada{odd}", "password": "x{odd}"}}'),
                ("POST", "/api/events/E0/acknowledge", f'{{"note": "seen {odd}"}}'),
                ("POST", "/api/users", f'{{"username": "u{odd}", "role": "viewer", "password": "long enough {odd}"}}'),
                ("PATCH", "/api/users/nobody", f'{{"password": "long enough {odd}"}}'),
                ("GET", f"/api/events?cell=A{odd}&wing={odd}", None),
                ("GET", f"/api/cells/A{odd}/history", None)):
            r = c.request(method, url, content=body, headers=headers)
            assert r.status_code < 500, (method, url, body, r.status_code, r.text)
    assert server.services.store.verify_audit_chain().ok
