"""Predictions: for stored videos by id, or for an uploaded clip."""

from __future__ import annotations

import os
import time

from fastapi import APIRouter, Body, Depends, File, Form, HTTPException, UploadFile
from starlette.concurrency import run_in_threadpool

from featurestore import InvalidVideoError, validate_video_id

from ..errors import error_responses
from ..predictor import PredictJob, Ranked
from ..schemas import PredictRequest, PredictResponse, VideoPredictResponse
from ..state import ServingState, get_state
from ..uploads import check_content_type, save_upload

router = APIRouter(tags=["predict"])

EXAMPLES = {
    "two videos": {
        "summary": "Top 3 classes of two stored videos",
        "value": {"video_ids": ["69241", "65539"], "top_k": 3},
    }
}


def _check_top_k(state: ServingState, top_k: int) -> None:
    if top_k > state.settings.max_top_k:
        raise HTTPException(422, f"top_k must be <= {state.settings.max_top_k}, got {top_k}")


def _unknown(state: ServingState, video_ids: list[str]) -> list[str]:
    out = []
    for vid in video_ids:
        try:
            validate_video_id(vid)
        except InvalidVideoError:
            out.append(vid)
            continue
        if vid not in state.store:
            out.append(vid)
    return out


def _prediction(video_id: str, ranked: Ranked) -> dict:
    return {
        "video_id": video_id,
        "top_k": [
            {"label": lab, "gloss": g, "prob": p}
            for lab, g, p in zip(ranked.labels, ranked.glosses, ranked.probs, strict=True)
        ],
    }


@router.post(
    "/v1/predict",
    response_model=PredictResponse,
    summary="Classify stored videos",
    description="Concurrent requests are micro-batched into one model forward; results are "
    "the same as one request at a time.",
    responses=error_responses(401, 404, 422, 503),
)
async def predict(
    body: PredictRequest = Body(openapi_examples=EXAMPLES),
    state: ServingState = Depends(get_state),
) -> dict:
    limit = state.settings.max_predict_ids
    if len(body.video_ids) > limit:
        raise HTTPException(
            422, f"at most {limit} video ids per request, got {len(body.video_ids)}"
        )
    _check_top_k(state, body.top_k)
    unknown = _unknown(state, body.video_ids)
    if unknown:
        raise HTTPException(404, f"unknown video ids: {unknown[:10]}")
    ranked = await state.batcher.submit(PredictJob(body.top_k, tuple(body.video_ids)))
    return {"predictions": [_prediction(v, r) for v, r in zip(body.video_ids, ranked, strict=True)]}


@router.post(
    "/v1/predict/video",
    response_model=VideoPredictResponse,
    summary="Classify an uploaded clip",
    description="Decodes the clip, extracts features with the store's encoder and landmarks, "
    "and classifies them. Size and clip length are limited (see /v1/info).",
    responses=error_responses(401, 413, 415, 422, 503),
)
async def predict_video(
    file: UploadFile = File(description="A video clip (mp4, webm, mov...)."),
    top_k: int = Form(5, ge=1, description="Classes to return."),
    state: ServingState = Depends(get_state),
) -> dict:
    t0 = time.perf_counter()
    check_content_type(file.content_type)
    _check_top_k(state, top_k)
    path = await run_in_threadpool(save_upload, file.file)
    try:
        t1 = time.perf_counter()
        arrays = await state.uploads.extract(path)
        t2 = time.perf_counter()
        ranked = await state.batcher.submit(PredictJob(top_k, arrays=arrays))
        t3 = time.perf_counter()
    finally:
        os.unlink(path)
    name = file.filename or "upload"
    return {
        "predictions": [_prediction(name, ranked[0])],
        "timings": {
            "upload_ms": (t1 - t0) * 1000,
            "extract_ms": (t2 - t1) * 1000,
            "predict_ms": (t3 - t2) * 1000,
            "total_ms": (t3 - t0) * 1000,
        },
    }
