"""Users, passwords, sessions and roles for the API.

* Passwords are hashed with Argon2id (RFC 9106) through argon2-cffi; a login for an
  unknown user verifies against a dummy hash, so response time does not tell which
  user names exist.
* A session is a random 256-bit token. The browser holds it in an HttpOnly,
  SameSite=Strict cookie; scripts and tools send it as ``Authorization: Bearer``. The
  database keeps only its SHA-256, so a copy of the database opens no session.
* Roles are ordered: a viewer reads, an operator also works events (acknowledge,
  escalate, close), an admin also manages users and reads the audit log.
* Logins are rate limited per client address and per user name (failures in a sliding
  window): guessing passwords costs the attacker time, not the operators their access
  from other consoles.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from service.deps import ServicesDep
from service.passwords import token_hash
from service.store import ROLES, UserRow

SESSION_COOKIE = "cellwatch_session"
ROLE_RANK = {role: i for i, role in enumerate(ROLES)}


class LoginLimiter:
    """At most ``max_failures`` failed logins per key (client address, user name) per ``window_s``."""

    def __init__(self, max_failures: int, window_s: float, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()
        self.n_refused = 0

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after_s(self, keys: Iterable[str]) -> float | None:
        """Seconds until a login under these keys may be tried again, or None if it may now."""
        now = self.clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if len(times) >= self.max_failures:
                    wait = max(wait, times[0] + self.window_s - now)
            if wait > 0:
                self.n_refused += 1
        return wait if wait > 0 else None

    def failed(self, keys: Iterable[str]) -> None:
        now = self.clock()
        with self._lock:
            for key in keys:
                times = self._failures.setdefault(key, deque())
                self._failures.move_to_end(key)
                times.append(now)
                if len(times) > self.max_failures:
                    times.popleft()
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the user, and the session (token hash) they came with."""

    user: UserRow
    token_hash: str
    expires_s: float

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def role(self) -> str:
        return self.user.role

    def has_role(self, role: str) -> bool:
        return ROLE_RANK[self.user.role] >= ROLE_RANK[role]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": 'Bearer realm="cellwatch"'})


def request_token(request: Request) -> str | None:
    """The session token of a request: ``Authorization: Bearer`` first, else the cookie."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return request.cookies.get(SESSION_COOKIE) or None


def current_principal(request: Request, services: ServicesDep) -> Principal:
    token = request_token(request)
    if token is None:
        raise _unauthorized("log in first: no session (cookie or bearer token)")
    found = services.store.session_user(token_hash(token), time.time())
    if found is None:
        raise _unauthorized("session expired or unknown: log in again")
    session, user = found
    return Principal(user, session.token_hash, session.expires_s)


def require_role(role: str) -> Callable[[Principal], Principal]:
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}")

    def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.has_role(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {role} role (you are {principal.role})")
        return principal

    return dependency


CurrentUser = Annotated[Principal, Depends(current_principal)]
ViewerUser = Annotated[Principal, Depends(require_role("viewer"))]
OperatorUser = Annotated[Principal, Depends(require_role("operator"))]
AdminUser = Annotated[Principal, Depends(require_role("admin"))]
