"""User management (admin): ``/api/users``. Users are disabled, never deleted: the audit log names them."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from service.auth import AdminUser
from service.deps import ServicesDep
from service.passwords import check_password, check_username
from service.schemas import Error, UserCreateIn, UserList, UserOut, UserUpdateIn, user_out
from service.store import ConflictError, NotFoundError

router = APIRouter(prefix="/api/users", tags=["users"],
                   responses={401: {"model": Error}, 403: {"model": Error}})


@router.get("", response_model=UserList, summary="All users")
def list_users(_: AdminUser, services: ServicesDep) -> UserList:
    return UserList(items=[user_out(u) for u in services.store.list_users()])


@router.post("", response_model=UserOut, status_code=status.HTTP_201_CREATED,
             responses={400: {"model": Error}, 409: {"model": Error}}, summary="Create a user")
def create_user(body: UserCreateIn, principal: AdminUser, services: ServicesDep) -> UserOut:
    try:
        check_username(body.username)
        check_password(body.password, services.settings.security.password_min_length)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    try:
        user = services.store.create_user(body.username, body.role, services.passwords.hash(body.password),
                                          actor=principal.username)
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return user_out(user)


@router.patch("/{username}", response_model=UserOut,
              responses={400: {"model": Error}, 404: {"model": Error}, 409: {"model": Error}},
              summary="Change a user's role, password or disabled flag")
def update_user(username: str, body: UserUpdateIn, principal: AdminUser, services: ServicesDep) -> UserOut:
    """A new password or disabling ends the user's sessions. The last enabled admin stays an admin."""
    store = services.store
    target = store.get_user(username)
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {username!r}")
    loses_admin = target.role == "admin" and not target.disabled and (
        (body.role is not None and body.role != "admin") or body.disabled is True)
    if loses_admin and sum(1 for u in store.list_users() if u.role == "admin" and not u.disabled) <= 1:
        raise HTTPException(status.HTTP_409_CONFLICT, "this is the last enabled admin: create another admin first")
    password_hash = None
    if body.password is not None:
        try:
            check_password(body.password, services.settings.security.password_min_length)
        except ValueError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        password_hash = services.passwords.hash(body.password)
    try:
        user = store.update_user(username, actor=principal.username, role=body.role, password_hash=password_hash,
                                 disabled=body.disabled)
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return user_out(user)
