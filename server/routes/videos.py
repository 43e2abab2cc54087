"""Stored videos: listing, metadata and feature arrays (JSON for people, .npy for programs)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response

from featurestore import IndexEntry, InvalidVideoError, StreamNotFoundError, validate_video_id

from ..encoding import json_bytes, npy_bytes
from ..errors import error_responses
from ..schemas import FeatureArray, VideoDetail, VideoList
from ..state import ServingState, get_state

router = APIRouter(tags=["videos"])

NPY = "application/x-npy"
VIDEO_ID = Path(description="A stored video's id.", examples=["69241"])


def known_video(state: ServingState, video_id: str) -> str:
    """404 unless the id is in the store's index. Ids are checked against the in-memory
    index only, so an id that looks like a path never reaches the filesystem."""
    try:
        validate_video_id(video_id)
    except InvalidVideoError:
        raise HTTPException(404, f"unknown video {video_id!r}") from None
    if video_id not in state.store:
        raise HTTPException(404, f"unknown video {video_id!r}")
    return video_id


@router.get(
    "/v1/videos",
    response_model=VideoList,
    summary="List stored videos",
    responses=error_responses(401, 422, 503),
)
def list_videos(
    split: str | None = Query(None, description="Only this split (train, val, test...)."),
    gloss: str | None = Query(None, description="Only this gloss (exact)."),
    q: str | None = Query(None, description="Only ids or glosses containing this (any case)."),
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
    state: ServingState = Depends(get_state),
) -> dict:
    ids = state.ids(split)
    if gloss is not None or q:
        ids = [v for v in ids if matches(state.store.entry(v), gloss, q)]
    items = []
    for vid in ids[offset : offset + limit]:
        e = state.store.entry(vid)
        items.append({"video_id": vid, "label": e.label, "gloss": e.gloss, "split": e.split})
    return {"items": items, "total": len(ids)}


def matches(entry: IndexEntry, gloss: str | None, q: str | None) -> bool:
    if gloss is not None and entry.gloss != gloss:
        return False
    if q:
        needle = q.lower()
        return needle in entry.video_id.lower() or needle in (entry.gloss or "").lower()
    return True


@router.get(
    "/v1/videos/{video_id}",
    response_model=VideoDetail,
    summary="One video's metadata",
    responses=error_responses(401, 404, 503),
)
async def get_video(video_id: str = VIDEO_ID, state: ServingState = Depends(get_state)) -> dict:
    e = state.store.entry(known_video(state, video_id))
    return {
        "video_id": e.video_id,
        "label": e.label,
        "gloss": e.gloss,
        "split": e.split,
        "source": e.source,
        "streams": state.streams_of(e.video_id),
    }


@router.get(
    "/v1/videos/{video_id}/features/{stream}",
    summary="One stream of one video",
    description=f"JSON `{{shape, dtype, data}}` by default; `.npy` bytes with `Accept: {NPY}`.",
    response_model=FeatureArray,
    responses={
        200: {"content": {NPY: {"schema": {"type": "string", "format": "binary"}}}},
        **error_responses(401, 404, 503),
    },
)
async def get_features(
    request: Request,
    video_id: str = VIDEO_ID,
    stream: str = Path(
        description="A stream of the store: a base stream or an added feature set.",
        examples=["landmarks"],
    ),
    state: ServingState = Depends(get_state),
) -> Response:
    known_video(state, video_id)
    if stream not in state.store.schema.all_streams:
        streams = sorted(state.store.schema.all_streams)
        raise HTTPException(404, f"unknown stream {stream!r}; this store has {streams}")
    arr = state.cache.get(video_id, stream)
    if arr is None:  # only a miss leaves the event loop
        loop = asyncio.get_running_loop()
        try:
            arr = await loop.run_in_executor(state.io_executor, state.load_stream, video_id, stream)
        except StreamNotFoundError:  # a feature set not yet added to this video
            raise HTTPException(
                404, f"video {video_id!r} does not hold feature set {stream!r}"
            ) from None
    if NPY in request.headers.get("accept", ""):
        return Response(npy_bytes(arr), media_type=NPY)
    # Text for 40k floats takes milliseconds: off the event loop, so that it does not
    # stall the lookups and predictions of other clients meanwhile.
    loop = asyncio.get_running_loop()
    body = await loop.run_in_executor(state.io_executor, json_bytes, arr)
    return Response(body, media_type="application/json")
