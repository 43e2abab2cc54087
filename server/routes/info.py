"""What is being served: the store and the model."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from model import count_parameters

from ..errors import error_responses
from ..schemas import Info
from ..state import ServingState, get_state

router = APIRouter(tags=["info"])


@router.get(
    "/v1/info",
    response_model=Info,
    summary="Store and model description",
    responses=error_responses(401, 503),
)
def info(state: ServingState = Depends(get_state)) -> dict:
    ckpt, s = state.checkpoint, state.settings
    return {
        "store": state.store.info(),
        "model": {
            "fusion": ckpt.config.fusion_type,
            "modalities": ckpt.config.modalities,
            "parameters": count_parameters(ckpt.model),
            "num_classes": ckpt.config.num_classes,
            "hidden_dim": ckpt.config.hidden_dim,
            "num_frames": ckpt.num_frames,
            "streams": ckpt.streams,
            "encoder": ckpt.encoder,
            "metrics": ckpt.metrics,
        },
        "serving": {
            "micro_batching": s.micro_batching,
            "batch_max_size": s.batch_max_size,
            "batch_max_wait_ms": s.batch_max_wait_ms,
            "max_predict_ids": s.max_predict_ids,
            "max_upload_bytes": s.max_upload_bytes,
            "max_clip_seconds": s.max_clip_seconds,
            "upload": state.uploads.status,
            "cache": {
                "max_bytes": state.cache.max_bytes,
                "bytes": state.cache.nbytes,
                "hits": state.cache.hits,
                "misses": state.cache.misses,
            },
        },
    }
