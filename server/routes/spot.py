"""Continuous signing: find and name the signs in an uploaded recording, as asl-spot does.

The upload is a video, a `.pose` file or a `.npy` of per-frame landmark vectors (what
asl-spot takes, but for MP_Data folders: send their frames stacked in one `.npy`). The
answer is asl-spot's JSON (`SpotDocument`), from the model served when the request came.
"""

# No `from __future__ import annotations`: FastAPI reads the form's types at run time.
import os

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile
from starlette.concurrency import run_in_threadpool

from spotting import SpotConfig, SpotDocument, SpotError, document, spot
from spotting.core import parse_seconds

from ..errors import error_responses
from ..settings import Settings
from ..spotter import (
    read_landmarks,
    read_video,
    refusal,
    served_classifier,
    spot_config,
    upload_suffix,
)
from ..state import ServingState, get_state
from ..uploads import check_content_type, save_upload

DESCRIPTION = """Windows of several lengths slide over the recording's frames; the model names
each, and the windows where a sign beats the rest and its rivals become segments. A video's
landmarks come from every frame at `fps` (default its own, at most 30), tracked; its
encoder features, when the model reads them, from the frames windows read. Limits: the
upload's bytes and frame size as for clips, and at most `ASL_MAX_SPOT_SECONDS` (see
/v1/info) of recording. Bad input (no frames, nobody in view, a `.npy` of another width,
fewer frames than the model's T, landmarks for a model that also reads video features) is
a 422 naming the file."""


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["spot"])

    @router.post(
        "/v1/spot",
        response_model=SpotDocument,
        summary="Find and name the signs in a long recording",
        description=DESCRIPTION,
        responses=error_responses(401, 413, 415, 422, 503),
    )
    async def spot_upload(
        file: UploadFile = File(
            description="A video, a .pose file, or a .npy of per-frame landmark vectors "
            "(1662, 258, 126 or 162 values a frame); the name's suffix says which."
        ),
        fps: float | None = Form(
            None,
            gt=0,
            le=120,
            description="Frames a second to read (video: default its own, at most 30; "
            "landmark files: their own, else 30).",
        ),
        window_s: str | None = Form(
            None,
            description="Window lengths in seconds, comma-separated (default "
            "ASL_SPOT_WINDOW_S: 0.8,1.2,1.8,2.7).",
        ),
        stride: int | None = Form(
            None, ge=1, le=1000, description=f"Frames between windows ({SpotConfig.stride})."
        ),
        min_score: float | None = Form(
            None, ge=0, le=1, description="A sign's least probability (ASL_SPOT_MIN_SCORE)."
        ),
        min_hands: float | None = Form(
            None,
            ge=0,
            le=1,
            description="Share of a window's frames with a hand in view (ASL_SPOT_MIN_HANDS).",
        ),
        top_k: int = Form(5, ge=1, le=settings.max_top_k, description="Classes per segment."),
        state: ServingState = Depends(get_state),
    ) -> SpotDocument:
        classify = served_classifier(state)
        try:
            seconds = parse_seconds(window_s) if window_s is not None else None
        except ValueError as exc:
            raise HTTPException(422, f"window_s: {exc}") from None
        suffix = upload_suffix(file.filename)
        if suffix == ".video":
            check_content_type(file.content_type)

        def configure(rate: float) -> SpotConfig:
            return spot_config(
                state.settings,
                rate,
                classify.num_frames,
                seconds,
                stride,
                min_score,
                min_hands,
                top_k,
            )

        path = await run_in_threadpool(save_upload, file.file, suffix)
        try:
            if suffix == ".video":
                rec, config = await state.uploads.run(
                    read_video, state, path, classify, fps, configure
                )
            else:
                rec = await run_in_threadpool(read_landmarks, path, classify, fps, state.settings)
                config = configure(rec.fps)
            result = await run_in_threadpool(spot, classify, rec.arrays, rec.fps, config)
        except (SpotError, ValueError) as exc:
            raise refusal(exc, path, file.filename or "upload") from None
        finally:
            os.unlink(path)
        return document(result)

    return router
