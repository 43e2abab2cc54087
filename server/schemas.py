"""Request and response bodies; they are also the OpenAPI schema and its examples."""

from __future__ import annotations

from typing import Annotated, Any, Literal

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
    model: dict[str, Any] | None = Field(
        description="Fusion, parameters, metrics from the checkpoint (null: no model yet)."
    )
    serving: dict[str, Any] = Field(description="Batching, limits and upload status.")
    teach: dict[str, Any] = Field(
        description="Whether writes are on (else how to turn them on), whether jobs can run, "
        "the running job, the longest gloss, the training defaults."
    )


# -- teaching: takes, training jobs, the served model ---------------------------------------
class TakeResponse(BaseModel):
    video_id: str = Field(examples=["hello-20250101T120000-1a2b3c"])
    gloss: str = Field(examples=["hello"])
    label: int = Field(description="The gloss's class index in the store.", examples=[0])
    split: str = Field(description="As given, or the per-gloss rule's.", examples=["train"])
    kind: str = Field(description="video, npy or pose.", examples=["video"])
    frames: int = Field(description="Frames stored (the store's T).", examples=[16])
    source_frames: int = Field(description="The take's own length, in frames.", examples=[90])
    parts_found: list[list[str]] | None = Field(
        description="Per stored frame, the landmark parts found (null: the store keeps no "
        "landmarks).",
        examples=[[["pose", "right_hand"], ["pose"]]],
    )
    frames_without_hands: int | None = Field(
        description="Stored frames where neither hand was found.", examples=[1]
    )
    timings: dict[str, float] = Field(
        description="upload_ms, extract_ms (decode, landmarks, encoder), commit_ms, total_ms."
    )
    details: ClipDetails | None = Field(None, description="Only for a video, when asked.")


class Deleted(BaseModel):
    video_id: str = Field(examples=["hello-20250101T120000-1a2b3c"])
    deleted: bool = Field(examples=[True])


class GlossTakes(BaseModel):
    gloss: str = Field(examples=["hello"])
    label: int = Field(examples=[0])
    takes: dict[str, int] = Field(description="Takes per split.", examples=[{"train": 8, "val": 2}])
    total: int = Field(examples=[10])
    in_model: bool = Field(description="Whether the served model knows this gloss.")


class GlossList(BaseModel):
    glosses: list[GlossTakes]
    total: int = Field(description="Takes in all.", examples=[10])


class TrainRequest(BaseModel):
    """`asl-train` options that make sense here; anything left out takes the defaults for a
    small set (GET /v1/info: serving.train_defaults)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{}, {"epochs": 40, "modalities": "landmarks"}]},
    )

    epochs: JsonInt | None = Field(None, ge=1, le=1000)
    modalities: Literal["both", "landmarks", "visual"] | None = Field(
        None, description="Default: both when the store keeps encoder features, else landmarks."
    )
    lr: float | None = Field(None, gt=0, le=1)
    batch_size: JsonInt | None = Field(None, ge=1, le=1024)
    hidden_dim: JsonInt | None = Field(None, ge=8, le=2048)
    dropout: float | None = Field(None, ge=0, lt=1)
    fusion_type: Literal["concat", "attention", "gated"] | None = None
    augment: bool | None = None
    seed: JsonInt | None = Field(None, ge=0)
    patience: JsonInt | None = Field(None, ge=0, description="Early stopping on val; 0: off.")
    label_smoothing: float | None = Field(None, ge=0, lt=1)
    weight_decay: float | None = Field(None, ge=0, le=1)


class TrainStarted(BaseModel):
    job_id: str = Field(examples=["20250101T120000-1a2b3c"])
    state: str = Field(examples=["queued"])
    options: dict[str, Any] = Field(description="Every option the job runs with.")


class EpochMetrics(BaseModel):
    model_config = ConfigDict(extra="allow")

    epoch: int = Field(description="1-based.", examples=[1])
    train_loss: float | None = None
    train_top1: float | None = None
    val_loss: float | None = None
    val_top1: float | None = None


class TrainJob(BaseModel):
    job_id: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    epoch: int = Field(description="Epochs finished so far.")
    epochs: int | None = Field(description="Epochs the job runs.")
    metrics: list[EpochMetrics] = Field(description="One entry per finished epoch.")
    error: str | None
    options: dict[str, Any]
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    served: bool = Field(description="Whether its model is the one served now.")
    report: dict[str, Any] | None = Field(
        description="Once done: the model on the val takes (top1, per_class, confusion, "
        "labels; rows of the confusion matrix are the true class)."
    )


class TrainJobList(BaseModel):
    jobs: list[dict[str, Any]] = Field(description="Newest first, without metrics and report.")
    running: str | None = Field(description="The job training now, if any.")


class ModelState(BaseModel):
    model: dict[str, Any] | None = Field(description="The served model (null: none yet).")
    previous: dict[str, Any] | None = Field(description="What POST /v1/model/rollback returns to.")
