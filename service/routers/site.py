"""The site plan as JSON for drawing: ``/api/site`` (places with polygons, walls, sensors)."""

from __future__ import annotations

from fastapi import APIRouter

from service.auth import ViewerUser
from service.deps import ServicesDep
from service.schemas import Error, SiteOut, site_out

router = APIRouter(prefix="/api/site", tags=["site"], responses={401: {"model": Error}, 403: {"model": Error}})


@router.get("", response_model=SiteOut, summary="Wings, floors, cells and zones (polygons), walls, sensors")
def get_site(_: ViewerUser, services: ServicesDep) -> SiteOut:
    return site_out(services.site)
