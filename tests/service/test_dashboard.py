"""The dashboard's files as the service sends them, their strings, and the cells ranking endpoint.

Through real HTTP on 127.0.0.1 (tests/service/harness.py). What the page does in a browser
is tested in tests/browser/ with Chromium against ``cellwatch demo``.
"""

from __future__ import annotations

import json
import re
import time
import typing
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from calibration.site import load_site
from sdr.sources.base import SourceState
from service.routers.dashboard import STATIC_DIR
from service.schemas import Outcome, RoleName, Status
from service.store import EventWrite
from tests.conftest import DEMO_SITE
from tests.service.harness import LiveServer, live_server, make_settings

JS_FILES = sorted(STATIC_DIR.glob("js/**/*.js"))
TEXT_FILES = [STATIC_DIR / "index.html", *sorted(STATIC_DIR.glob("css/*.css")), *JS_FILES]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(make_settings(tmp_path_factory.mktemp("dashboard"))) as s:
        for name, role in (("vera", "viewer"), ("otto", "operator")):
            s.add_user(name, role)
        yield s


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def strings(lang: str) -> dict[str, str]:
    return json.loads((STATIC_DIR / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))


# -- serving ------------------------------------------------------------------------------------


def test_index_loads_without_a_session_with_strict_headers(http: httpx.Client) -> None:
    r = http.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/static/js/app.js">' in r.text
    # The data stays behind the login.
    assert http.get("/api/site").status_code == 401
    assert http.get("/api/cells/ranking").status_code == 401


@pytest.mark.parametrize(("path", "content_type"), [
    ("/static/js/app.js", "text/javascript; charset=utf-8"),
    ("/static/css/app.css", "text/css; charset=utf-8"),
    ("/static/i18n/fr.json", "application/json"),
    ("/static/icon.svg", "image/svg+xml"),
    ("/favicon.ico", "image/svg+xml"),
])
def test_assets_have_their_content_type_and_revalidate(http: httpx.Client, path: str, content_type: str) -> None:
    r = http.get(path)
    assert r.status_code == 200, path
    assert r.headers["content-type"] == content_type
    assert r.headers["cache-control"] == "no-cache"
    etag = r.headers["etag"]
    again = http.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert http.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
    head = http.head(path)
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) == len(r.content)


def test_every_static_file_is_served_as_on_disk(http: httpx.Client) -> None:
    files = [p for p in STATIC_DIR.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                         p.relative_to(STATIC_DIR).parts)]
    assert len(files) >= 15
    for path in files:
        r = http.get(f"/static/{path.relative_to(STATIC_DIR).as_posix()}")
        assert r.status_code == 200, path
        assert r.content == path.read_bytes()


@pytest.mark.parametrize("path", [
    "/static/../routers/dashboard.py", "/static/%2e%2e/routers/dashboard.py", "/static/js/../../app.py",
    "/static/js", "/static/", "/static/nope.js", "/static/js//app.js", "/static/.hidden",
    "/static/js%5c..%5c..%5capp.py", "/static/" + "a" * 300,
])
def test_nothing_outside_the_static_folder_is_served(http: httpx.Client, path: str) -> None:
    r = http.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert "import" not in r.text


def test_dashboard_routes_stay_out_of_the_api_schema(server: LiveServer) -> None:
    paths = server.app.openapi()["paths"]
    assert "/api/cells/ranking" in paths
    assert not any(p == "/" or p.startswith("/static") or p == "/favicon.ico" for p in paths)


# -- what the files may contain (the CSP, no network at run time) --------------------------------


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.assets: list[str] = []
        self.i18n_keys: set[str] = set()
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"inline handler {name} on <{tag}>")
            if name == "style":
                self.problems.append(f"style attribute on <{tag}>")
            if name.startswith("data-i18n") and value:
                self.i18n_keys.add(value)
            if value and value.strip().lower().startswith("javascript:"):
                self.problems.append(f"javascript: URL on <{tag}>")
        if tag == "script":
            self._in_script = True
            if not values.get("src"):
                self.problems.append("a script without src")
        if tag == "style":
            self.problems.append("a <style> element")
        for name in ("src", "href"):
            value = values.get(name)
            if value and value.startswith("/static/"):
                self.assets.append(value)
            elif value and "://" in value:
                self.problems.append(f"external {name}: {value}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("inline script code")


def parse_index() -> _Page:
    page = _Page()
    page.feed((STATIC_DIR / "index.html").read_text(encoding="utf-8"))
    return page


def test_index_has_no_inline_script_or_style_and_its_assets_exist() -> None:
    page = parse_index()
    assert page.problems == []
    assert "/static/js/app.js" in page.assets and "/static/css/app.css" in page.assets
    for asset in page.assets:
        assert (STATIC_DIR / asset.removeprefix("/static/")).is_file(), asset


@pytest.mark.parametrize("path", TEXT_FILES, ids=lambda p: p.relative_to(STATIC_DIR).as_posix())
def test_no_eval_no_inline_styles_no_remote_resources(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for pattern in (r"\beval\s*\(", r"new\s+Function\s*\(", r"\.innerHTML\b", r"\.outerHTML\b",
                    r"insertAdjacentHTML", r"setAttribute\(\s*['\"]style['\"]", r"document\.write",
                    r"setTimeout\(\s*['\"]", r"@import"):
        assert not re.search(pattern, text), f"{path.name}: {pattern}"
    urls = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
    assert urls == set(), f"{path.name} reaches outside the service: {urls}"


def test_every_module_import_resolves() -> None:
    for path in JS_FILES:
        for target in re.findall(r"^import[^;]*?from\s+\"([^\"]+)\";", path.read_text(encoding="utf-8"), re.M | re.S):
            assert target.startswith("./") or target.startswith("../"), (path.name, target)
            assert (path.parent / target).resolve().is_file(), (path.name, target)


# -- strings: French and English ------------------------------------------------------------------


def test_french_and_english_have_the_same_keys_and_no_empty_string() -> None:
    fr, en = strings("fr"), strings("en")
    assert set(fr) == set(en), set(fr) ^ set(en)
    assert all(v.strip() for v in fr.values()) and all(v.strip() for v in en.values())
    for key in fr:  # the same placeholders on both sides
        assert set(re.findall(r"\{(\w+)\}", fr[key])) == set(re.findall(r"\{(\w+)\}", en[key])), key
    different = sum(1 for key in fr if fr[key] != en[key])
    assert different > 0.8 * len(fr)  # a real translation, not a copy


def test_every_string_the_page_asks_for_exists() -> None:
    fr = strings("fr")
    used = set(parse_index().i18n_keys)
    for path in JS_FILES:
        used |= set(re.findall(r"\bt\(\s*\"([a-z0-9_.]+)\"", path.read_text(encoding="utf-8")))
    assert len(used) > 150
    assert used - set(fr) == set()


def test_every_value_of_the_service_vocabularies_is_translated() -> None:
    fr = strings("fr")
    kinds = {p.kind for p in load_site(DEMO_SITE).places} | {"cell", "corridor", "staff", "stairwell", "yard",
                                                               "outside"}
    families = {
        "status": typing.get_args(Status), "outcome": typing.get_args(Outcome), "role": typing.get_args(RoleName),
        "tech": ("gsm", "lte", "nr", "umts", "unknown"), "kind": kinds,
        "live": ("off", "connecting", "live", "reconnecting"), "period": ("1h", "24h", "7d", "30d", "all"),
        "action": ("acknowledge", "escalate", "close", "reopen"), "workflow.done": ("acknowledge", "escalate", "close"),
        "priority": ("alert", "staff", "medium", "low"), "sensor": ("online", "offline"),
        "source": typing.get_args(SourceState),
        "filter.status": ("open", "new", "acknowledged", "escalated", "closed", "all"),
        "audit.action": ("event.acknowledge", "event.escalate", "event.close", "event.reopen", "event.evidence_export",
                         "sensor.online", "sensor.offline", "sensor.source", "session.login", "session.login_failed", "session.logout",
                         "user.create", "user.update"),
    }
    missing = []
    for prefix, values in families.items():
        sep = "_" if prefix in ("workflow.done", "filter.status") else "."
        missing += [f"{prefix}{sep}{v}" for v in values if f"{prefix}{sep}{v}" not in fr]
    assert missing == []


# -- /api/cells/ranking ---------------------------------------------------------------------------


def put_event(server: LiveServer, event_id: str, cell: str | None, *, age_s: float, confidence: float | None,
              zone: str | None = None, n_bursts: int = 10) -> None:
    t_end = time.time() - age_s
    wing, floor = ("A", 1) if cell is None else (cell.split("-")[0], int(cell.split("-")[1]))
    record = {"event_id": event_id, "t_start_s": t_end - 20.0, "t_end_s": t_end, "tech": "gsm", "freq_hz": 902.4e6,
              "n_bursts": n_bursts, "sensors": [{"sensor_id": "A1-S1", "rssi_dbm": -60.0, "n_bursts": n_bursts}],
              "wing": wing, "floor": floor, "cell": cell, "zone": zone, "confidence": confidence,
              "candidates": [{"place": cell or zone, "p": confidence or 0.0}],
              "place_kind": "cell" if cell else "staff", "priority": "alert" if cell else "staff"}
    server.services.store.upsert_events([EventWrite(event_id, record)])


@pytest.fixture(scope="module")
def ranked(server: LiveServer) -> LiveServer:
    store = server.services.store
    put_event(server, "r-recent", "A-1-03", age_s=60, confidence=0.9)          # open, sure, now
    put_event(server, "r-recent-2", "A-1-03", age_s=600, confidence=0.6)
    put_event(server, "r-old", "B-2-11", age_s=20 * 3600, confidence=0.9)      # open, sure, a day ago
    put_event(server, "r-unsure", "A-2-14", age_s=60, confidence=0.2)          # open, unsure, now
    put_event(server, "r-found", "B-1-06", age_s=60, confidence=0.95)          # searched: phone found
    store.transition_event("r-found", "close", "otto", outcome="phone_found", note="under the mattress")
    put_event(server, "r-nothing", "A-1-07", age_s=60, confidence=0.9)         # searched, nothing found
    store.transition_event("r-nothing", "close", "otto", outcome="nothing_found")
    put_event(server, "r-staff", None, zone="A-1-staff", age_s=30, confidence=0.99)  # a zone: never ranked
    put_event(server, "r-week", "A-2-01", age_s=3 * 86400, confidence=0.9)     # only in 7d and 30d
    return server


def test_ranking_orders_cells_by_confidence_recency_and_searches(ranked: LiveServer, http: httpx.Client) -> None:
    body = http.get("/api/cells/ranking", headers=ranked.login("vera")).json()
    assert body["period"] == "24h"
    assert body["until_s"] - body["since_s"] == pytest.approx(86400.0)
    assert body["half_life_s"] == pytest.approx(6 * 3600.0) and body["n_bins"] == 24
    order = [r["place"] for r in body["items"]]
    # A fresh unsure event (0.2) outweighs a day-old sure one (0.9 x 2^-(20/6) = 0.09).
    assert order[:5] == ["A-1-03", "A-1-07", "A-2-14", "B-2-11", "B-1-06"]
    assert "A-1-staff" not in order and "A-2-01" not in order
    assert [r["rank"] for r in body["items"]] == list(range(1, len(order) + 1))
    by = {r["place"]: r for r in body["items"]}
    top = by["A-1-03"]
    assert top["n_events"] == 2 and top["n_open"] == 2 and top["n_bursts"] == 20
    assert top["event_ids"] == ["r-recent", "r-recent-2"]  # heaviest first
    assert top["max_confidence"] == pytest.approx(0.9) and top["mean_confidence"] == pytest.approx(0.75)
    assert top["last_search"] is None and top["techs"] == ["gsm"]
    assert sum(top["activity"]) == 2 and top["activity"][-1] == 2
    found = by["B-1-06"]
    assert found["score"] == 0.0 and found["n_phone_found"] == 1 and found["n_open"] == 0
    assert found["last_search"]["outcome"] == "phone_found" and found["last_search"]["by"] == "otto"
    # Searched without result: half of an open event of the same age and confidence.
    assert by["A-1-07"]["score"] == pytest.approx(0.5 * 0.9 * 0.5 ** (60 / (6 * 3600)), rel=1e-3)
    assert by["A-1-07"]["n_nothing_found"] == 1
    # A day-old sure event weighs 2^-(20/6) of a fresh one.
    assert by["B-2-11"]["score"] == pytest.approx(0.9 * 0.5 ** (20 / 6), rel=1e-3)
    assert by["B-2-11"]["activity"].index(1) < 6


def test_ranking_periods_and_limits(ranked: LiveServer, http: httpx.Client) -> None:
    headers = ranked.login("otto")
    week = http.get("/api/cells/ranking?period=7d", headers=headers).json()
    assert week["n_bins"] == 28 and week["bin_s"] == 6 * 3600.0
    assert "A-2-01" in [r["place"] for r in week["items"]]
    month = http.get("/api/cells/ranking", params={"period": "30d", "limit": 2}, headers=headers).json()
    assert month["n_bins"] == 30 and len(month["items"]) == 2
    for bad in ({"period": "1y"}, {"limit": 0}, {"limit": 5000}):
        r = http.get("/api/cells/ranking", params=bad, headers=headers)
        assert r.status_code == 422, bad
        assert r.json()["detail"]
