"""Security properties of the service, checked as an attacker or an auditor would.

* CURVE is on unless ``ingest.insecure = true`` is written: a config without keys is
  refused with a clear error, and so are the ingest and the node's sender built without;
* every route of the application (enumerated from the app itself, hidden ones included)
  answers 401 without a session, or with a forged one, except ``/healthz``, the login
  and the dashboard's static files (the login page must load; they hold no data);
* logins are rate limited (429 with Retry-After, even for the right password), and the
  refusals are counted in the metrics;
* passwords are stored as Argon2id hashes at the configured cost, never in clear;
* the audit log refuses UPDATE and DELETE, and a row changed behind the service's back
  is found by ``cellwatch audit verify`` (exit 2 naming the row);
* the security headers (a strict CSP) are on ``/``, every static file and the API;
* no secret (password, session token, CURVE secret key) shows in the logs of a run that
  creates users, logs in and out, fails logins, and ingests over CURVE;
* there is no default account: ``cellwatch serve`` with no users starts with a warning
  saying how to create the first admin, and no usual default password gets in.
"""

from __future__ import annotations

import logging
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from dsp.errors import InputError
from dsp.records import Detection
from sdr.sender import DetectionSender
from service.app import CONTENT_SECURITY_POLICY
from service.ingest import IngestServer
from service.keys import create_keypair, load_keypair
from service.routers.dashboard import STATIC_DIR
from service.settings import (
    HttpSettings,
    IngestSettings,
    SecuritySettings,
    ServiceSettings,
    load_settings,
)
from tests.conftest import DEMO_SITE
from tests.hardening.fuzzing import run_cli
from tests.service.harness import PASSWORD, LiveServer, live_server, make_settings, wait_for

PUBLIC = {"/healthz", "/api/auth/login", "/", "/favicon.ico", "/static/{relative:path}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("security")
    settings = make_settings(tmp, security=SecuritySettings(password_hash_time_cost=2, password_hash_memory_kib=16384,
                                                            login_max_failures=1000))
    with live_server(settings) as s:
        s.add_user("ada", "admin")
        yield s


# -- CURVE by default ---------------------------------------------------------------------------------------


def test_curve_is_required_unless_insecure_is_written(tmp_path: Path) -> None:
    config = tmp_path / "service.toml"
    config.write_text(f'site = "{DEMO_SITE}"\n[ingest]\nbind = "tcp://127.0.0.1:5557"\n')
    with pytest.raises(InputError, match=r"CURVE needs ingest\.server_key and ingest\.allowed_keys_dir"):
        load_settings(config)
    ran = run_cli("serve", "--config", config)
    assert ran.code == 2 and "CURVE needs ingest.server_key" in ran.err and len(ran.err.strip().splitlines()) == 1
    assert not (tmp_path / "cellwatch.sqlite").exists()
    config.write_text(f'site = "{DEMO_SITE}"\n')  # no [ingest] at all: the default is CURVE too
    with pytest.raises(InputError, match="CURVE"):
        load_settings(config)
    config.write_text(f'site = "{DEMO_SITE}"\n[ingest]\ninsecure = true\n')  # only when written
    assert load_settings(config).ingest.insecure
    assert IngestSettings.model_fields["insecure"].default is False
    with pytest.raises(ValueError, match="CURVE needs"):
        IngestServer(object(), bind="tcp://127.0.0.1:*")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="CURVE needs"):
        DetectionSender("tcp://127.0.0.1:1", "A1-S1", tmp_path / "outbox.sqlite")


# -- sessions --------------------------------------------------------------------------------------------


def _routes(server: LiveServer) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, hidden ones included.

    FastAPI >= 0.16x keeps included routers as wrappers that resolve their routes lazily;
    walk those, plain routes, and the OpenAPI schema (a route it lists must be walked too).
    """
    found: set[tuple[str, str]] = set()

    def add(path: str, methods: object) -> None:
        found.update((m, path) for m in (methods or ()) if m != "HEAD")  # type: ignore[attr-defined]

    for route in server.app.routes:
        if isinstance(route, Route):
            add(route.path, route.methods)
        for context in getattr(route, "effective_route_contexts", lambda: ())():
            add(context.path, getattr(context.original_route, "methods", None))
    schema = {(m.upper(), p) for p, ops in server.app.openapi()["paths"].items() for m in ops}
    assert schema <= found, f"routes the walk missed: {sorted(schema - found)}"
    return sorted(found)


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_route_but_healthz_login_and_static_files_needs_a_session(server: LiveServer) -> None:
    routes = _routes(server)
    protected = [(m, p) for m, p in routes if p not in PUBLIC]
    assert {p for _, p in routes} >= PUBLIC - {"/static/{relative:path}"} | {"/api/openapi.json", "/metrics"}
    with server.client() as c:
        for method, path in protected:
            for headers in ({}, {"Authorization": "Bearer forged-token"}, {"Cookie": "cellwatch_session=forged"}):
                r = c.request(method, _concrete(path), json={} if method in ("POST", "PATCH", "PUT") else None,
                              headers=headers)
                assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
                assert r.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/healthz").status_code == 200
        assert c.post("/api/auth/login", json={"username": "ada", "password": "nope nope nope"}).status_code == 401
    print(f"\n{len(protected)} routes of {len(routes)} need a session (each tried without one, with a forged "
          f"bearer token and a forged cookie); public: {', '.join(sorted(PUBLIC))}")
    assert len(protected) >= 20


def test_login_is_rate_limited_even_for_the_right_password(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, security=SecuritySettings(
        password_hash_time_cost=1, password_hash_memory_kib=8192, login_max_failures=3, login_window_s=60))
    with live_server(settings) as server, server.client() as c:
        server.add_user("rita", "viewer")
        server.add_user("ada", "admin")
        for _ in range(3):
            assert c.post("/api/auth/login", json={"username": "rita", "password": "wrong guess 123"}).status_code == 401
        r = c.post("/api/auth/login", json={"username": "rita", "password": PASSWORD})
        assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 60 and "try again" in r.json()["detail"]
        # another name from the same address is limited too (the address is a key)
        assert c.post("/api/auth/login", json={"username": "ada", "password": PASSWORD}).status_code == 429
        assert server.services.limiter.n_refused == 2
        n_failed, rows = server.services.store.list_audit(action="session.login_failed")
        assert n_failed == 3 and {row.target for row in rows} == {"rita"}
        from service.routers.health import render_metrics

        assert "cellwatch_login_refused_total 2" in render_metrics(server.services)


def test_passwords_are_argon2id_hashes_at_the_configured_cost(server: LiveServer) -> None:
    user = server.services.store.get_user("ada")
    assert user is not None and PASSWORD not in user.password_hash
    assert re.fullmatch(r"\$argon2id\$v=19\$m=16384,t=2,p=4\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+", user.password_hash)
    assert server.services.passwords.verify(user.password_hash, PASSWORD)
    assert not server.services.passwords.verify(user.password_hash, PASSWORD + " ")


# -- the audit log -----------------------------------------------------------------------------------------


def test_audit_log_is_append_only_and_tampering_is_found_by_the_command(tmp_path: Path) -> None:
    from bench.service_ingest import write_service_config

    config = write_service_config(tmp_path, [])
    settings = load_settings(config)
    from service.store import open_store

    with open_store(settings.database_url) as store:
        for i in range(5):
            store.audit("ada", "event.acknowledge", f"E{i}", {"note": "on it"})
    ok = run_cli("audit", "--config", config, "verify")
    assert ok.code == 0 and "audit log intact: 5 rows" in ok.out
    db = tmp_path / "cellwatch.sqlite"
    with sqlite3.connect(db) as conn:
        for statement in ("UPDATE audit_log SET actor = 'eve' WHERE id = 2", "DELETE FROM audit_log WHERE id = 5"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(statement)
        conn.execute("DROP TRIGGER audit_log_no_update")  # someone with the file's rights goes further
        conn.execute("UPDATE audit_log SET details = '{\"note\":\"nothing to see\"}' WHERE id = 3")
    broken = run_cli("audit", "--config", config, "verify")
    assert broken.code == 2 and len(broken.err.strip().splitlines()) == 1
    assert "audit_log row 3" in broken.err and "does not match its hash" in broken.err and "2 rows before" in broken.err


# -- headers -------------------------------------------------------------------------------------------------


def test_security_headers_on_the_page_every_static_file_and_the_api(server: LiveServer) -> None:
    files = sorted(p.relative_to(STATIC_DIR).as_posix() for p in STATIC_DIR.rglob("*")
                   if p.is_file() and not p.name.startswith("."))
    urls = ["/", "/favicon.ico", "/healthz", "/api/events", "/static/nope.js"] + [f"/static/{f}" for f in files]
    with server.client() as c:
        for url in urls:
            r = c.get(url)
            assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, url
            assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY", url
            assert r.headers["referrer-policy"] == "no-referrer" and "cross-origin-opener-policy" in r.headers, url
            if url.startswith("/api/"):
                assert r.headers["cache-control"] == "no-store"
    csp = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'" and csp["frame-ancestors"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    page = (STATIC_DIR / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page), "an inline script: the CSP blocks it"
    assert not re.search(r"\son[a-z]+\s*=", page) and "style=" not in page, "inline handlers or styles"
    print(f"\nsecurity headers checked on {len(urls)} URLs ({len(files)} static files)")


# -- secrets and logs ----------------------------------------------------------------------------------------


def test_no_secret_reaches_the_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, server_secret = create_keypair(tmp_path / "keys", "service")
    public, node_secret = create_keypair(tmp_path / "keys", "A1-S1")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / public.name).write_bytes(public.read_bytes())
    server_keys, node_keys = load_keypair(server_secret), load_keypair(node_secret)
    settings = make_settings(tmp_path, ingest=True, http=HttpSettings(),
                             security=SecuritySettings(password_hash_time_cost=1, password_hash_memory_kib=8192))
    settings = settings.model_copy(update={"ingest": IngestSettings(bind="tcp://127.0.0.1:*", server_key=server_secret,
                                                                    allowed_keys_dir=allowed)})
    secret_password = "Sup3r secret passphrase!"
    new_password = "an0ther secret passphrase"
    tokens: list[str] = []
    with caplog.at_level(logging.DEBUG), live_server(settings) as s:
        s.add_user("ada", "admin", secret_password)
        with s.client() as c:
            assert c.post("/api/auth/login", json={"username": "ada", "password": secret_password + "x"}
                          ).status_code == 401
            r = c.post("/api/auth/login", json={"username": "ada", "password": secret_password})
            token = r.json()["token"]
            tokens.append(token)
            auth = {"Authorization": f"Bearer {token}"}
            assert c.get("/api/events", headers=auth).status_code == 200
            assert c.post("/api/users", headers=auth, json={"username": "otto", "role": "operator",
                                                            "password": new_password}).status_code == 201
            assert c.post("/api/me/password", headers=auth, json={"current_password": secret_password,
                                                                  "new_password": new_password}).status_code == 204
        sender = DetectionSender(s.services.ingest.endpoint, "A1-S1", tmp_path / "outbox.sqlite",
                                 server_public_key=server_keys.public, client_keys=node_keys).start()
        try:
            sender.submit([Detection("A1-S1", time.time(), 546e-6, 902.4e6, 200e3, -35.0, 14.0, "gsm")])
            assert sender.flush(15.0)
        finally:
            sender.close()
        wait_for(lambda: s.services.store.n_detections == 1, 5.0, "the detection stored")
        audit = [str(r.details) + str(r.target) for r in s.services.store.list_audit(limit=1000)[1]]
    # the service's own records (the test's HTTP client logs the cookies it receives at DEBUG: not the service)
    text = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert "login" in text.lower() or "session" in text.lower() or "http method=POST" in text  # the run was logged
    secrets_ = {"password": secret_password, "new password": new_password, "session token": tokens[0],
                "service CURVE secret": server_keys.secret.decode(), "node CURVE secret": node_keys.secret.decode()}
    for what, value in secrets_.items():
        assert value not in text, f"the {what} is in the logs"
        assert all(value not in row for row in audit), f"the {what} is in the audit log"
    print(f"\n{len(caplog.records)} log records and {len(audit)} audit rows of a run with logins, a password change "
          f"and CURVE ingest: no password, session token or CURVE secret key in them")


# -- no default account ------------------------------------------------------------------------------------


def test_serve_without_users_has_no_default_account(tmp_path: Path) -> None:
    from bench.service_ingest import start_service, write_service_config

    config = write_service_config(tmp_path, ["A1-S1"])
    svc = start_service(config, ["A1-S1"])
    try:
        for username, password in (("admin", "admin"), ("admin", "password"), ("admin", ""), ("cellwatch", "cellwatch"),
                                   ("root", "root"), ("demo", "demo")):
            r = httpx.post(f"{svc.url}/api/auth/login", json={"username": username, "password": password or "x"},
                           timeout=10.0)
            assert r.status_code == 401, (username, r.status_code)
        assert httpx.get(f"{svc.url}/api/events", timeout=10.0).status_code == 401
    finally:
        svc.stop(signal.SIGTERM)
    log = svc.log_text()
    assert "no users yet: create the first admin with `cellwatch users --config" in log
    with sqlite3.connect(tmp_path / "cellwatch.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0


def test_service_settings_default_to_the_safe_side() -> None:
    settings = ServiceSettings(site=DEMO_SITE, ingest=IngestSettings(insecure=True))
    assert settings.http.host == "127.0.0.1"  # not every interface unless asked
    assert settings.security.password_hash_time_cost >= 3 and settings.security.password_hash_memory_kib >= 65536
    assert settings.security.login_max_failures <= 10 and settings.security.session_ttl_s <= 24 * 3600
    assert settings.security.password_min_length >= 10
