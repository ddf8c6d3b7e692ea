"""The dashboard: ``/`` (the single page) and ``/static/...`` (its scripts, styles, strings).

The files are plain HTML, CSS and JavaScript modules from ``service/static``: no build
step, nothing fetched from the internet (control rooms are offline), nothing inline
(the service's Content-Security-Policy allows scripts and styles from files only).

No session is needed to load them: the login page must load before anyone has logged
in, and they hold no data. Everything the page shows comes from ``/api``, which stays
authenticated. Files are sent with ``Cache-Control: no-cache`` and an ETag: browsers
keep a copy but ask each time whether it changed (a 304 costs one round trip), so an
upgraded service never runs against a stale script without a build step fingerprinting
file names.
"""

from __future__ import annotations

import hashlib
import mimetypes
import threading
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import Response

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
CACHE_CONTROL = "no-cache"
MAX_PATH_CHARS = 200

# Types by suffix, spelled out: the platform's mimetypes table varies between systems, and
# with ``X-Content-Type-Options: nosniff`` a script served with the wrong type does not run.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    etag: str
    content_type: str
    mtime_ns: int


class StaticFiles:
    """The files under one folder, read once and re-read when they change on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._cache: dict[Path, StaticFile] = {}
        self._lock = threading.Lock()

    def resolve(self, relative: str) -> Path | None:
        """The file ``relative`` names inside the root, or None (hidden files, ``..``, folders)."""
        if not relative or len(relative) > MAX_PATH_CHARS or "\\" in relative or "\x00" in relative:
            return None
        parts = relative.split("/")
        if any(not p or p.startswith(".") for p in parts):
            return None
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path

    def get(self, relative: str) -> StaticFile | None:
        path = self.resolve(relative)
        if path is None:
            return None
        try:
            mtime_ns = path.stat().st_mtime_ns
        except OSError:
            return None
        with self._lock:
            cached = self._cache.get(path)
        if cached is not None and cached.mtime_ns == mtime_ns:
            return cached
        try:
            body = path.read_bytes()
        except OSError:
            return None
        content_type = CONTENT_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
        found = StaticFile(body, f'"{hashlib.sha256(body).hexdigest()[:32]}"',
                           content_type or "application/octet-stream", mtime_ns)
        with self._lock:
            self._cache[path] = found
        return found


_files = StaticFiles(STATIC_DIR)


def _send(request: Request, relative: str) -> Response:
    found = _files.get(relative)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    headers = {"cache-control": CACHE_CONTROL, "etag": found.etag}
    if found.etag in {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    body = b"" if request.method == "HEAD" else found.body
    out = Response(body, media_type=found.content_type, headers=headers)
    if request.method == "HEAD":
        out.headers["content-length"] = str(len(found.body))
    return out


@router.api_route("/", methods=["GET", "HEAD"])
def index(request: Request) -> Response:
    return _send(request, "index.html")


@router.api_route("/favicon.ico", methods=["GET", "HEAD"])
def favicon(request: Request) -> Response:
    return _send(request, "icon.svg")


@router.api_route("/static/{relative:path}", methods=["GET", "HEAD"])
def static_file(relative: str, request: Request) -> Response:
    return _send(request, relative)
