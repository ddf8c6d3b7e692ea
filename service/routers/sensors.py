"""Sensor health: ``/api/sensors``. Online while the last heartbeat is younger than ``sensors.offline_after_s``."""

from __future__ import annotations

import time

from fastapi import APIRouter

from service.auth import ViewerUser
from service.deps import ServicesDep
from service.schemas import Error, SensorList, sensor_views

router = APIRouter(prefix="/api/sensors", tags=["sensors"], responses={401: {"model": Error}, 403: {"model": Error}})


@router.get("", response_model=SensorList, summary="Every sensor: state, last heartbeat, noise floor per band, losses")
def list_sensors(_: ViewerUser, services: ServicesDep) -> SensorList:
    offline_after_s = services.settings.sensors.offline_after_s
    items = sensor_views(services.site, services.store.sensor_health(), services.store.last_detection_by_sensor(),
                         time.time(), offline_after_s)
    n_online = sum(1 for s in items if s.state == "online")
    return SensorList(offline_after_s=offline_after_s, n_online=n_online, n_offline=len(items) - n_online,
                      items=items)
