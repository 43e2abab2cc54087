"""Takes: add one (a clip or a landmark sequence), delete one, count them per gloss.

Adding and deleting are writes: they need `--allow-writes` (403 otherwise) and the API key
when the server has one.
"""

from __future__ import annotations

import time
from collections import Counter

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile

from featurestore import InvalidVideoError, VideoNotFoundError, validate_video_id

from ..errors import error_responses
from ..schemas import Deleted, GlossList, TakeResponse
from ..security import require_writes
from ..settings import Settings
from ..state import ServingState, get_state
from ..takes import frames_without_hands, parts_found, read_take
from ..teach import check_gloss, check_new_id, check_split

WRITE_ERRORS = error_responses(401, 403, 404, 409, 413, 415, 422, 503)


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["takes"])

    @router.post(
        "/v1/videos",
        status_code=201,
        response_model=TakeResponse,
        summary="Add a take",
        description="Stores one take of a gloss: a video clip (WebM, MP4... as browsers "
        "record them), extracted as uploads are, or a landmark sequence (`.npy` of per-frame "
        "MediaPipe vectors, 1662, 258 or 126 values a frame; or `.pose`), sampled to the "
        "store's T. Answers 201 once the take is committed. Without `split`, the 5th, 10th, "
        "... take of a gloss goes to val, the others to train.",
        dependencies=[Depends(require_writes)],
        responses=WRITE_ERRORS,
    )
    async def add_take(
        file: UploadFile = File(description="A video clip, or a .npy / .pose sequence."),
        gloss: str = Form("", description=f"The sign (1-{settings.max_gloss_chars} chars)."),
        video_id: str | None = Form(None, description="Default: <gloss>-<time>-<random>."),
        split: str | None = Form(None, description="train, val, test...; default: the rule."),
        signer: str | None = Form(None, max_length=100, description="Who signs (recorded)."),
        details: bool = Form(False, description="A video's sampled frames and landmarks too."),
        state: ServingState = Depends(get_state),
    ) -> dict:
        t0 = time.perf_counter()
        gloss = check_gloss(gloss, settings.max_gloss_chars)
        split, video_id = check_split(split), check_new_id(video_id)
        take = await read_take(state, file, details)
        t1 = time.perf_counter()
        source = {"format": "take", "kind": take.kind, "frames": take.frames}
        source.update({"filename": file.filename[:200]} if file.filename else {})
        source.update({"signer": signer} if signer else {})
        assert state.teacher is not None, "writes are on"
        stored = await state.teacher.add(take.arrays, gloss, video_id, split, source)
        await state.refresh()  # the next request lists it
        t2 = time.perf_counter()
        found = parts_found(take.arrays, state.store.schema.landmark_layout)
        return {
            **stored,
            "kind": take.kind,
            "frames": state.store.schema.num_frames,
            "source_frames": take.frames,
            "parts_found": found,
            "frames_without_hands": frames_without_hands(found),
            "timings": {
                **take.timings,
                "extract_ms": (t1 - t0) * 1000 - take.timings["upload_ms"],
                "commit_ms": (t2 - t1) * 1000,
                "total_ms": (t2 - t0) * 1000,
            },
            "details": take.details,
        }

    @router.delete(
        "/v1/videos/{video_id}",
        response_model=Deleted,
        summary="Delete a take",
        description="Removes a stored video: no list, training run or prediction sees it "
        "afterwards; `featurestore compact` reclaims its bytes.",
        dependencies=[Depends(require_writes)],
        responses=WRITE_ERRORS,
    )
    async def delete_take(video_id: str, state: ServingState = Depends(get_state)) -> dict:
        try:
            validate_video_id(video_id)
        except InvalidVideoError:
            raise HTTPException(404, f"unknown video {video_id!r}") from None
        assert state.teacher is not None, "writes are on"
        await state.teacher.delete(video_id)
        await state.refresh()
        return {"video_id": video_id, "deleted": True}

    @router.get(
        "/v1/glosses",
        response_model=GlossList,
        summary="Takes per gloss and split",
        description="Every gloss of the store's label map, with its takes per split, and "
        "whether the served model knows it.",
        responses=error_responses(401, 503),
    )
    def glosses(state: ServingState = Depends(get_state)) -> dict:
        store = state.store
        counts: dict[str, Counter] = {}
        for vid in state.ids(None):
            try:
                e = store.entry(vid)
            except VideoNotFoundError:  # deleted since the list was made
                continue
            if e.gloss:
                counts.setdefault(e.gloss, Counter())[e.split] += 1
        known = set(state.checkpoint.labels.values()) if state.checkpoint else set()
        items = [
            {
                "gloss": gloss,
                "label": label,
                "takes": dict(sorted(counts.get(gloss, Counter()).items())),
                "total": sum(counts.get(gloss, Counter()).values()),
                "in_model": gloss in known,
            }
            for label, gloss in sorted(store.labels.items(), key=lambda kv: kv[1])
        ]
        return {"glosses": items, "total": sum(i["total"] for i in items)}

    return router
