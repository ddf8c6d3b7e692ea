"""The audit log (admin): ``/api/audit`` and ``/api/audit/verify`` (the hash chain, recomputed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.auth import AdminUser
from service.deps import ServicesDep
from service.schemas import AuditList, AuditVerifyOut, Error, audit_out

router = APIRouter(prefix="/api/audit", tags=["audit"], responses={401: {"model": Error}, 403: {"model": Error}})


@router.get("", response_model=AuditList, summary="Audit entries, newest first")
def list_audit(
    _: AdminUser,
    services: ServicesDep,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
) -> AuditList:
    total, rows = services.store.list_audit(limit=limit, offset=offset, actor=actor, action=action, since_s=since)
    return AuditList(total=total, limit=limit, offset=offset, items=[audit_out(r) for r in rows])


@router.get("/verify", response_model=AuditVerifyOut, summary="Recompute the hash chain of the whole log")
def verify(_: AdminUser, services: ServicesDep) -> AuditVerifyOut:
    v = services.store.verify_audit_chain()
    return AuditVerifyOut(ok=v.ok, n_rows=v.n_rows, head_hash=v.head_hash, first_bad_id=v.first_bad_id,
                          problem=v.problem)
