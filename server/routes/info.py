"""What is being served: the store and the model."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException

from model import Checkpoint, count_parameters

from ..clips import MB
from ..errors import error_responses
from ..schemas import Info
from ..security import WRITES_OFF
from ..state import ServingState, get_state
from ..train_options import SMALL_SET_DEFAULTS

router = APIRouter(tags=["info"])


@router.get(
    "/v1/info",
    response_model=Info,
    summary="Store and model description",
    responses=error_responses(401, 503),
)
def info(state: ServingState = Depends(get_state)) -> dict:
    s = state.settings
    return {
        "store": state.store.info(),
        "model": model_info(state.checkpoint),
        "serving": {
            "micro_batching": s.micro_batching,
            "batch_max_size": s.batch_max_size,
            "batch_max_wait_ms": s.batch_max_wait_ms,
            "max_predict_ids": s.max_predict_ids,
            "max_upload_bytes": s.max_upload_bytes,
            "max_clip_seconds": s.max_clip_seconds,
            "max_upload_pixels": s.max_upload_pixels,
            "upload_peak_mb": round(state.uploads.upload_peak / MB),
            "upload_memory_mb": s.upload_memory_mb,
            "upload_queue": state.uploads.queue_limit,
            "max_spot_seconds": s.max_spot_seconds,
            "spot_window_s": s.spot_window_s,
            "spot_min_score": s.spot_min_score,
            "spot_min_hands": s.spot_min_hands,
            "max_streams": s.max_streams,
            "stream_every": s.stream_every,
            "stream_fps": s.stream_fps,
            "stream_queue_frames": s.stream_queue_frames,
            "stream_finish_seconds": s.stream_finish_seconds,
            "stream_idle_seconds": s.stream_idle_seconds,
            "upload": state.uploads.status,
            "cache": {
                "max_bytes": state.cache.max_bytes,
                "bytes": state.cache.nbytes,
                "hits": state.cache.hits,
                "misses": state.cache.misses,
            },
        },
        "teach": {
            "allow_writes": s.allow_writes,
            "writes": None if s.allow_writes else WRITES_OFF,
            "training": state.jobs is not None,
            "running_job": None if state.jobs is None else state.jobs.running_id,
            "max_gloss_chars": s.max_gloss_chars,
            "train_defaults": SMALL_SET_DEFAULTS,
        },
    }


def model_info(ckpt: Checkpoint | None) -> dict | None:
    """What the served model is (None before the first training job)."""
    if ckpt is None:
        return None
    return {
        "fusion": ckpt.config.fusion_type,
        "modalities": ckpt.config.modalities,
        "parameters": count_parameters(ckpt.model),
        "num_classes": ckpt.config.num_classes,
        "hidden_dim": ckpt.config.hidden_dim,
        "num_frames": ckpt.num_frames,
        "streams": ckpt.streams,
        "features": ckpt.features,
        "encoder": ckpt.encoder,
        "metrics": ckpt.metrics,
    }


#: Where `asl-eval --out` reports are looked for, relative to the checkpoint's folder.
REPORT_PLACES = ("report.json", "eval/report.json")


@router.get(
    "/v1/model/report",
    summary="The eval report beside the checkpoint",
    description="`report.json` written by `asl-eval --out` in the checkpoint's folder or its "
    "`eval/` subfolder: top-1/top-5, per-class accuracy, confusion matrix (rows: true class).",
    responses=error_responses(401, 404, 503),
)
def model_report(state: ServingState = Depends(get_state)) -> dict:
    current = state.models.current
    path = find_report(current.path if current is not None else None)
    if path is None:
        raise HTTPException(
            404, "no eval report beside the checkpoint (run asl-eval --out, or train one here)"
        )
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HTTPException(404, f"eval report {path.name} is unreadable: {exc}") from None
    keep = ("split", "count", "top1", "top5", "loss", "per_class", "confusion", "labels")
    return {"path": str(path), **{k: report.get(k) for k in keep}}


def find_report(checkpoint: str | None) -> Path | None:
    if not checkpoint or "://" in checkpoint:
        return None
    folder = Path(checkpoint).parent
    for name in REPORT_PLACES:
        if (folder / name).is_file():
            return folder / name
    return None
