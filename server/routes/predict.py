"""Predictions: for stored videos by id, or for an uploaded clip.

The router is built per app: the request schema carries the configured limits (most ids,
largest top_k), so the OpenAPI document states them and validation enforces them.
"""

# No `from __future__ import annotations`: FastAPI must see the per-app body model itself.
import time
from typing import Any

from fastapi import APIRouter, Body, Depends, File, Form, HTTPException, UploadFile
from fastapi.openapi.models import Example
from fastapi.responses import JSONResponse
from pydantic import Field, create_model

from featurestore import InvalidVideoError, validate_video_id

from ..errors import error_responses
from ..predictor import PredictJob, Ranked
from ..schemas import JsonInt, PredictRequest, PredictResponse, VideoPredictResponse
from ..settings import Settings
from ..state import ServingState, get_state
from ..takes import read_take

EXAMPLES: dict[str, Example] = {
    "two videos": {
        "summary": "Top 3 classes of two stored videos",
        "value": {"video_ids": ["69241", "65539"], "top_k": 3},
    }
}


def request_model(settings: Settings) -> type[PredictRequest]:
    """PredictRequest with this server's limits in its schema."""
    return create_model(
        "PredictRequest",
        __base__=PredictRequest,
        video_ids=(
            list[str],
            Field(
                min_length=1,
                max_length=settings.max_predict_ids,
                description="Stored videos to classify.",
            ),
        ),
        top_k=(
            JsonInt,
            Field(
                5,
                ge=1,
                le=settings.max_top_k,
                description="Classes per video (capped at the class count).",
            ),
        ),
    )


def unknown_ids(state: ServingState, video_ids: list[str]) -> list[str]:
    """Ids not in the in-memory index (path-like ids are rejected before any lookup)."""
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


def prediction(video_id: str, ranked: Ranked) -> dict:
    return {
        "video_id": video_id,
        "top_k": [
            {"label": lab, "gloss": g, "prob": p}
            for lab, g, p in zip(ranked.labels, ranked.glosses, ranked.probs, strict=True)
        ],
    }


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["predict"])
    PredictBody: Any = request_model(settings)  # built at run time: no static type

    @router.post(
        "/v1/predict",
        response_model=PredictResponse,
        summary="Classify stored videos",
        description="Concurrent requests are micro-batched into one model forward; results "
        "are the same as one request at a time.",
        responses=error_responses(401, 404, 413, 422, 503),
    )
    async def predict(
        body: PredictBody = Body(openapi_examples=EXAMPLES),
        state: ServingState = Depends(get_state),
    ) -> JSONResponse:
        model = state.models.get()  # this request's model, whatever swaps meanwhile
        unknown = unknown_ids(state, body.video_ids)
        if unknown:
            raise HTTPException(404, f"unknown video ids: {unknown[:10]}")
        lacking = state.lacking(body.video_ids, model.predictor.streams)
        if lacking:
            name = model.checkpoint.features
            raise HTTPException(
                404,
                f"videos {lacking[:10]} do not hold feature set {name!r}, which the model reads",
            )
        job = PredictJob(model.predictor, body.top_k, tuple(body.video_ids))
        ranked = await state.batcher.submit(job)
        preds = [prediction(v, r) for v, r in zip(body.video_ids, ranked, strict=True)]
        # Built here from plain types: skip FastAPI's re-validation on the hot path (the
        # response_model still documents it, and the tests check the shape).
        return JSONResponse({"predictions": preds})

    @router.post(
        "/v1/predict/video",
        response_model=VideoPredictResponse,
        summary="Classify an uploaded clip",
        description="Decodes the clip, extracts features with the encoder of the model's "
        "feature set and landmarks, and classifies them; a landmark sequence (.npy, .pose) is "
        "read as POST /v1/videos reads it. Size and clip length are limited (see /v1/info).",
        responses=error_responses(401, 413, 415, 422, 503),
    )
    async def predict_video(
        file: UploadFile = File(
            description="A video clip (mp4, webm, mov...), or a landmark sequence (.npy of "
            "per-frame vectors, .pose) for a model that reads landmarks only."
        ),
        top_k: int = Form(5, ge=1, le=settings.max_top_k, description="Classes to return."),
        details: bool = Form(
            False,
            description="Also return the T sampled frames (small JPEGs), their times in the "
            "clip, and the landmarks and mask found on each.",
        ),
        state: ServingState = Depends(get_state),
    ) -> dict:
        t0 = time.perf_counter()
        model = state.models.get()  # this request's model, whatever swaps meanwhile
        take = await read_take(state, file, details)
        missing = [s for s in model.predictor.streams if s not in take.arrays]
        if missing:
            raise HTTPException(
                422,
                f"the model reads {missing}, which a {take.kind} take does not give: send a "
                "video clip",
            )
        t2 = time.perf_counter()
        arrays = {s: take.arrays[s][None] for s in model.predictor.streams}
        ranked = await state.batcher.submit(PredictJob(model.predictor, top_k, arrays=arrays))
        t3 = time.perf_counter()
        body: dict[str, Any] = {
            "predictions": [prediction(file.filename or "upload", ranked[0])],
            "timings": {
                **take.timings,
                "extract_ms": (t2 - t0) * 1000 - take.timings["upload_ms"],
                "model_ms": (t3 - t2) * 1000,
                "predict_ms": (t3 - t2) * 1000,
                "total_ms": (t3 - t0) * 1000,
            },
        }
        if details:
            body["details"] = take.details
        return body

    return router
