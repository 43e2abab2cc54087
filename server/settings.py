"""Service settings: one pydantic model, read from arguments or `ASL_*` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service can be told; `ASL_STORE=... ASL_CHECKPOINT=... asl-serve` works."""

    model_config = SettingsConfigDict(env_prefix="ASL_", extra="ignore")

    store: str | None = Field(None, description="Feature store URL (folder, .h5, or fsspec URL).")
    checkpoint: str | None = Field(None, description="Model checkpoint written by asl-train.")
    storage_options: dict | None = Field(None, description="fsspec options for a remote store.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, description="uvicorn worker processes.")
    api_key: SecretStr | None = Field(None, description="When set, /v1 routes need X-API-Key.")
    device: str = Field("cpu", description="Torch device for the model and the encoder.")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads (default 1).")

    max_predict_ids: int = Field(256, ge=1, description="Most video ids in one predict request.")
    max_top_k: int = Field(100, ge=1, description="Largest top_k a client may ask for.")
    micro_batching: bool = Field(True, description="Merge concurrent predictions into a batch.")
    batch_max_size: int = Field(64, ge=1, description="Most videos in one model forward.")
    batch_max_wait_ms: float = Field(2.0, ge=0, description="How long a batch waits to fill.")

    cache_mb: float = Field(256.0, ge=0, description="LRU of feature arrays; 0 turns it off.")
    io_threads: int = Field(2, ge=1, description="Threads reading the store for lookups.")
    refresh_s: float = Field(
        2.0, ge=0, description="How often to look for new commits, deletes and compacts; 0: never."
    )

    upload_enabled: bool = Field(True, description="Load the encoder and accept video uploads.")
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1, description="Largest upload accepted.")
    max_clip_seconds: float = Field(30.0, gt=0, description="Longest clip accepted.")
    max_pending_uploads: int = Field(8, ge=1, description="Uploads queued for extraction.")
    max_upload_pixels: int = Field(
        1920 * 1920, ge=1, description="Largest upload frame (width x height), from its header."
    )
    upload_memory_mb: float = Field(
        4096.0, gt=0, description="Memory the queued uploads may take, each at its most."
    )

    max_spot_seconds: float = Field(
        600.0, gt=0, description="Longest recording /v1/spot takes (video or landmark file)."
    )
    spot_window_s: str = Field(
        "0.8,1.2,1.8,2.7",
        description="Spotting window lengths in seconds, around the training clips' durations.",
    )
    spot_min_score: float = Field(
        0.5, ge=0, le=1, description="A sign's probability for a window to be a candidate."
    )
    spot_min_hands: float = Field(
        0.5, ge=0, le=1, description="Share of a window's frames with a hand in view."
    )

    max_streams: int = Field(8, ge=0, description="Concurrent /v1/stream connections.")
    stream_every: int = Field(4, ge=1, description="Live frames between two predictions.")
    stream_fps: float = Field(
        10.0, gt=0, le=60, description="Live frames a second, when the client does not say."
    )
    stream_queue_frames: int = Field(
        64, ge=1, description="Live frames waiting to be processed; beyond, the oldest is dropped."
    )
    stream_finish_seconds: float = Field(
        1.0, gt=0, description="Decide on the frames held when none came for this long."
    )
    max_frame_bytes: int = Field(1024 * 1024, ge=1, description="Largest live JPEG frame.")
    stream_idle_seconds: float = Field(
        60.0, gt=0, description="Close a live stream that sends no frame for this long."
    )

    allow_writes: bool = Field(
        False, description="Accept writes: add and delete takes, train and swap the model."
    )
    runs: str | None = Field(
        None, description="Folder for training runs (default: runs/ inside a local store)."
    )
    encoder: str | None = Field(
        None, description="Encoder whose features a store created here also keeps."
    )
    num_frames: int = Field(16, ge=1, le=256, description="T of a store created here.")
    max_gloss_chars: int = Field(100, ge=1, description="Longest gloss a take may name.")

    @field_validator("spot_window_s")
    @classmethod
    def _seconds(cls, value: str) -> str:
        from spotting.core import parse_seconds

        parse_seconds(value)  # ValueError: a clear line at start-up, not at the first request
        return value

    @field_validator("store", "checkpoint", "api_key", "runs", "encoder", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`ASL_API_KEY=` (as compose writes an unset variable) means no key, not ""."""
        return None if value == "" else value
