"""Request and response bodies; they are also the OpenAPI schema and its examples."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _number_not_bool_or_text(value: object) -> object:
    if isinstance(value, bool | str):
        raise ValueError("expected a JSON integer")
    return value


JsonInt = Annotated[int, BeforeValidator(_number_not_bool_or_text), Field(strict=False)]
"""An integer as JSON Schema has it: 3 or 3.0, never true or "3" (lax pydantic takes those
as 1 and 3; strict pydantic refuses 3.0, which the OpenAPI schema allows)."""


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Ready(BaseModel):
    status: str = Field(examples=["ready"])
    upload: str = Field(
        description="Video uploads: ready, loading, disabled, or why they failed.",
        examples=["ready"],
    )


class VideoSummary(BaseModel):
    video_id: str = Field(examples=["69241"])
    label: int = Field(description="Class index; -1 when unlabeled.", examples=[0])
    gloss: str = Field(examples=["hello"])
    split: str = Field(examples=["train"])


class VideoDetail(VideoSummary):
    source: dict[str, Any] = Field(
        description="Where the features came from (path, frame range, real frame count).",
        examples=[{"path": "videos/69241.mp4", "frame_start": 1, "frame_end": -1}],
    )
    streams: list[str] = Field(
        description="The streams it holds: the store's base streams, then the feature sets "
        "added to it.",
        examples=[["gemma", "landmarks", "landmark_mask"]],
    )


class VideoList(BaseModel):
    items: list[VideoSummary]
    total: int = Field(description="Videos matching the filter, before paging.", examples=[1])


class FeatureArray(BaseModel):
    shape: list[int] = Field(examples=[[16, 3]])
    dtype: str = Field(examples=["bool"])
    data: list = Field(description="Nested lists in C order.", examples=[[[True, False, True]]])


class PredictRequest(BaseModel):
    # strict: a value of the wrong JSON type is a 422, never quietly converted.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"video_ids": ["69241", "65539"], "top_k": 3}]},
    )

    video_ids: list[str] = Field(min_length=1, description="Stored videos to classify.")
    top_k: JsonInt = Field(5, ge=1, description="Classes per video (capped at the class count).")

    # The app narrows both fields with its configured limits (server.routes.predict).


class ClassProb(BaseModel):
    label: int = Field(examples=[0])
    gloss: str = Field(examples=["hello"])
    prob: float = Field(examples=[0.91])


class Prediction(BaseModel):
    video_id: str = Field(examples=["69241"])
    top_k: list[ClassProb]


class PredictResponse(BaseModel):
    predictions: list[Prediction]


class Timings(BaseModel):
    upload_ms: float = Field(description="Receiving and saving the upload.")
    extract_ms: float = Field(description="Decoding and feature extraction (incl. queueing).")
    decode_ms: float = Field(description="Decoding the clip and sampling its T frames.")
    encoder_ms: float = Field(description="The frozen image encoder on the T frames.")
    landmarks_ms: float = Field(description="MediaPipe Holistic on the T frames.")
    model_ms: float = Field(description="Model, incl. waiting for a micro-batch.")
    predict_ms: float = Field(description="Same as model_ms (the earlier name).")
    total_ms: float


class ClipDetails(BaseModel):
    fps: float = Field(description="The clip's frame rate (times are index / fps).")
    frame_indices: list[int] = Field(description="The T sampled frames (0-based).")
    frame_times: list[float] = Field(description="Their times in the clip, seconds.")
    frames: list[str] = Field(description="The sampled frames as small JPEG data URLs.")
    layout: dict[str, Any] | None = Field(description="Parts and points per part.")
    landmarks: list | None = Field(description="(T, K, 3) x, y (0..1 of the frame), z.")
    landmark_mask: list | None = Field(description="(T, parts): which parts were found.")


class VideoPredictResponse(PredictResponse):
    timings: Timings
    details: ClipDetails | None = Field(None, description="Only when asked (`details=true`).")


class Info(BaseModel):
    store: dict[str, Any] = Field(
        description="Videos, T, streams (shape, dtype), encoder fingerprint, classes."
    )
    model: dict[str, Any] = Field(description="Fusion, parameters, metrics from the checkpoint.")
    serving: dict[str, Any] = Field(description="Batching, limits and upload status.")
