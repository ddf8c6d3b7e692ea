"""Logging in and out, and who am I: ``/api/auth/*``, ``/api/me``."""

from __future__ import annotations

import math
import time

from fastapi import APIRouter, HTTPException, Request, Response, status

from service.auth import SESSION_COOKIE, CurrentUser
from service.deps import ServicesDep
from service.passwords import check_password, new_token, token_hash
from service.schemas import Error, LoginIn, LoginOut, MeOut, PasswordChangeIn, user_out

router = APIRouter(tags=["auth"])

_BAD_LOGIN = "wrong user name or password"


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/api/auth/login", response_model=LoginOut,
             responses={401: {"model": Error}, 429: {"model": Error, "description": "too many failed logins"}},
             summary="Log in: a session token and an HttpOnly cookie")
def login(body: LoginIn, request: Request, response: Response, services: ServicesDep) -> LoginOut:
    """Rate limited per client address and per user name; failures are audited."""
    client = client_address(request)
    keys = (f"ip:{client}", f"user:{body.username.lower()}")
    wait_s = services.limiter.retry_after_s(keys)
    if wait_s is not None:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"too many failed logins: try again in {math.ceil(wait_s)} s",
                            headers={"Retry-After": str(math.ceil(wait_s))})
    user = services.store.get_user(body.username)
    usable = user is not None and not user.disabled
    if not services.passwords.verify(user.password_hash if usable and user else None, body.password):
        services.limiter.failed(keys)
        services.store.audit("anonymous", "session.login_failed", body.username[:64], {"client": client})
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, _BAD_LOGIN)
    assert user is not None
    services.limiter.succeeded(keys)
    if services.passwords.needs_rehash(user.password_hash):  # the configured cost went up
        user = services.store.update_user(user.username, actor="system",
                                          password_hash=services.passwords.hash(body.password))
    token = new_token()
    ttl_s = services.settings.security.session_ttl_s
    session = services.store.create_session(token_hash(token), user, time.time() + ttl_s, client)
    response.set_cookie(SESSION_COOKIE, token, max_age=int(ttl_s), httponly=True, samesite="strict",
                        secure=services.settings.security.cookie_secure, path="/")
    return LoginOut(token=token, expires_s=session.expires_s, user=user_out(user))


@router.post("/api/auth/logout", status_code=status.HTTP_204_NO_CONTENT, responses={401: {"model": Error}},
             summary="End this session")
def logout(principal: CurrentUser, services: ServicesDep) -> Response:
    services.store.revoke_session(principal.token_hash, principal.username)
    out = Response(status_code=status.HTTP_204_NO_CONTENT)
    out.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                      secure=services.settings.security.cookie_secure)
    return out


@router.get("/api/me", response_model=MeOut, responses={401: {"model": Error}}, summary="Who is logged in")
def me(principal: CurrentUser) -> MeOut:
    u = user_out(principal.user)
    return MeOut(**u.model_dump(), session_expires_s=principal.expires_s)


@router.post("/api/me/password", status_code=status.HTTP_204_NO_CONTENT,
             responses={400: {"model": Error}, 401: {"model": Error}},
             summary="Change my password (ends all my sessions: log in again)")
def change_password(body: PasswordChangeIn, principal: CurrentUser, services: ServicesDep) -> Response:
    if not services.passwords.verify(principal.user.password_hash, body.current_password):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the current password is wrong")
    try:
        check_password(body.new_password, services.settings.security.password_min_length)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    services.store.update_user(principal.username, actor=principal.username,
                               password_hash=services.passwords.hash(body.new_password))
    out = Response(status_code=status.HTTP_204_NO_CONTENT)
    out.delete_cookie(SESSION_COOKIE, path="/")
    return out
