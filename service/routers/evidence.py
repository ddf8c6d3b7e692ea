"""An event's evidence: ``/api/events/{event_id}/spectrogram`` and ``/evidence``.

The spectrogram is what the dashboard draws in the event's detail: one IQ snippet of the
event (from the sensor that heard it strongest, or the one asked for), as power per
time x frequency cell. The evidence is the zip staff hand over (service.evidence): its
manifest gives every file's SHA-256 and the zip's, and each export is written to the
audit log with the zip's SHA-256, so what left the building, when and by whom, is known.
Viewers may read both.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from service.auth import ViewerUser
from service.deps import ServicesDep
from service.evidence import Evidence, build_evidence, choose_snippet, safe_name, spectrogram
from service.schemas import Error, EvidenceManifestOut, SpectrogramBurst, SpectrogramOut
from service.store import NotFoundError

router = APIRouter(prefix="/api/events", tags=["evidence"],
                   responses={401: {"model": Error}, 403: {"model": Error}, 404: {"model": Error}})

EventId = Annotated[str, Path(min_length=1, max_length=64, description="the event's id")]


def _no_event(event_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no event {event_id!r}")


@router.get("/{event_id}/spectrogram", response_model=SpectrogramOut,
            summary="Spectrogram of one IQ snippet of the event (strongest sensor by default)")
def get_spectrogram(
    event_id: EventId,
    _: ViewerUser,
    services: ServicesDep,
    sensor_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
) -> SpectrogramOut:
    store = services.store
    row = store.get_event(event_id)
    if row is None:
        raise _no_event(event_id)
    refs = store.event_snippet_refs(event_id)
    candidates = refs if sensor_id is None else [r for r in refs if r.sensor_id == sensor_id]
    chosen = choose_snippet(row, candidates)
    if chosen is None:
        whose = "" if sensor_id is None else f" from sensor {sensor_id!r}"
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"event {event_id!r} has no IQ snippet{whose}")
    found = store.get_snippets([chosen])
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"event {event_id!r} has no IQ snippet")
    snippet = found[0].snippet
    spec = spectrogram(snippet)
    return SpectrogramOut(
        sensor_id=snippet.sensor_id, center_freq_hz=snippet.center_freq_hz, sample_rate_hz=snippet.sample_rate_hz,
        t_s=[round(float(t), 7) for t in spec.t_s], freq_hz=[round(float(f), 1) for f in spec.freq_hz],
        power_db=[[round(float(v), 2) for v in row_] for row_ in spec.power_db.tolist()],
        t_start_s=snippet.t_start_s,
        burst=SpectrogramBurst(t_start_s=snippet.detection_t_start_s,
                               duration_s=snippet.burst_samples / snippet.sample_rate_hz,
                               freq_hz=snippet.detection_freq_hz, bandwidth_hz=snippet.burst_bandwidth_hz),
        sensors=sorted({r.sensor_id for r in refs}))


def _evidence(services: ServicesDep, event_id: str) -> Evidence:
    try:
        return build_evidence(services.store, event_id)
    except NotFoundError:
        raise _no_event(event_id) from None


@router.get("/{event_id}/evidence", response_class=Response,
            responses={200: {"content": {"application/zip": {}},
                             "description": "event.json, detections.jsonl, snippets/*.sigmf-meta + .sigmf-data, "
                                            "SHA256SUMS"}},
            summary="Export the event's evidence as a zip (audited)")
def get_evidence(event_id: EventId, principal: ViewerUser, services: ServicesDep) -> Response:
    evidence = _evidence(services, event_id)
    services.store.audit(principal.username, "event.evidence_export", evidence.event_id, {
        "zip_sha256": evidence.zip_sha256, "bytes": len(evidence.zip_bytes), "n_files": len(evidence.files),
        "n_snippets": evidence.n_snippets_included, "n_detections": evidence.n_detections_included})
    name = f"cellwatch-evidence-{safe_name(evidence.event_id)}.zip"
    return Response(evidence.zip_bytes, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "X-Content-SHA256": evidence.zip_sha256})


@router.get("/{event_id}/evidence/manifest", response_model=EvidenceManifestOut,
            summary="The evidence zip's files with their SHA-256, and the zip's")
def get_evidence_manifest(event_id: EventId, _: ViewerUser, services: ServicesDep) -> EvidenceManifestOut:
    return EvidenceManifestOut.model_validate(_evidence(services, event_id).manifest())
