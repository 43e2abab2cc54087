"""Reading what asl-spot is given into per-frame arrays, with the project's own readers.

- a ``.npy`` of per-frame landmark vectors: 1662, 258 or 126 values (the ``mpdata``
  importer's layouts) or 162 (the seed project's, ``seed_npy``);
- a ``.pose`` file (the ``pose`` importer);
- a folder of ``<frame>.npy`` files, one MP_Data sequence (the ``mpdata`` importer);
- anything else is taken for a video: MediaPipe Holistic in tracking mode over every frame
  (at ``fps``: default the video's, at most 30), one frame in memory at a time; Gemma
  features, when the checkpoint reads them, for the frames windows read, each once.

Every failure is a SpotError whose message names the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featurestore.importers.mpdata import WIDTHS, read_sequence, vectors_to_frames
from featurestore.importers.pose import scan as scan_pose
from featurestore.importers.scan import BadInput
from featurestore.importers.seed_npy import SEED_WIDTH, seed_landmarks
from model import GEMMA_STREAM, LANDMARK_MASK_STREAM, LANDMARKS_STREAM, fingerprint_diff
from spotting.classify import SpotError, WindowClassifier
from spotting.core import SpotConfig, used_frames

#: Frames a second assumed for landmark files that do not say (.npy, MP_Data folders).
DEFAULT_LANDMARK_FPS = 30.0
MAX_VIDEO_FPS = 30.0
LANDMARK_SUFFIXES = (".npy", ".pose")


@dataclass
class Recording:
    """One input as the spotting core takes it."""

    path: str
    fps: float
    arrays: dict[str, np.ndarray]

    @property
    def frames(self) -> int:
        return len(next(iter(self.arrays.values())))


def is_landmarks(path: Path) -> bool:
    """Inputs that hold landmarks only (no pixels, so no Gemma features)."""
    return path.is_dir() or path.suffix.lower() in LANDMARK_SUFFIXES


def read_landmarks(path: Path, face: bool, fps: float | None) -> Recording:
    """A landmark file or sequence folder as the store's landmark streams."""
    try:
        if path.is_dir():
            loaded = read_sequence(path, face)
        elif path.suffix.lower() == ".pose":
            plan = scan_pose([str(path)], face=face)
            assert plan.load is not None, "the pose format loads its items"
            loaded = plan.load(plan.items[0])
        else:
            return Recording(str(path), fps or DEFAULT_LANDMARK_FPS, _npy(path, face))
    except (BadInput, ValueError) as exc:
        raise SpotError(_named(str(exc), path)) from None
    rate = fps or float(loaded.info.get("fps") or DEFAULT_LANDMARK_FPS)
    return Recording(str(path), rate, loaded.arrays)


def _npy(path: Path, face: bool) -> dict[str, np.ndarray]:
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SpotError(f"{path}: unreadable .npy ({exc})") from None
    widths = [*WIDTHS, SEED_WIDTH]
    if values.ndim != 2 or values.shape[1] not in widths or values.dtype.kind not in "fiu":
        raise SpotError(
            f"{path}: array of shape {values.shape} {values.dtype}; expected per-frame landmark "
            f"vectors (frames, {' | '.join(map(str, widths))})"
        )
    values = values.astype(np.float32)
    if values.shape[1] == SEED_WIDTH:
        return seed_landmarks(values, face, str(path))
    return vectors_to_frames(values, face, str(path))


def _named(message: str, path: Path) -> str:
    return message if str(path) in message else f"{path}: {message}"


def check_streams(path: Path, classify: WindowClassifier) -> None:
    """SpotError when the checkpoint reads a stream this kind of input cannot give."""
    if classify.uses_gemma and is_landmarks(path):
        raise SpotError(
            f"{path}: holds landmarks only, but the checkpoint {classify.checkpoint_path} also "
            f"reads Gemma features (modalities={classify.modalities!r}); give it a video, or "
            "use a landmarks-only checkpoint"
        )


def read_input(path: str | Path, classify: WindowClassifier, fps: float | None = None) -> Recording:
    """The landmark streams of one INPUT, frame by frame, checked for what spotting needs.
    A video's Gemma features come after (`add_gemma`), once windows are laid at its rate."""
    path = Path(path)
    if not path.exists():
        raise SpotError(f"{path}: no such file or folder")
    check_streams(path, classify)
    rec = (
        read_landmarks(path, classify.face, fps)
        if is_landmarks(path)
        else read_video(path, classify.face, fps)
    )
    if not rec.arrays[LANDMARK_MASK_STREAM].any() and classify.uses_landmarks:
        raise SpotError(f"{path}: no signer in view (no pose and no hands in any frame)")
    if rec.frames < classify.num_frames:
        raise SpotError(
            f"{path}: {rec.frames} frames, fewer than the {classify.num_frames} frames (T) "
            "of one window of the model"
        )
    return rec


def read_video(path: Path, face: bool, fps: float | None) -> Recording:
    """Landmarks over every frame at `fps` (default the video's, at most 30), tracked."""
    from featurestore.extract import DecodeError, frame_rate

    try:
        native = frame_rate(path)
        rate = min(fps, native) if fps else min(native, MAX_VIDEO_FPS)
        arrays = _video_landmarks(path, rate, face)
    except DecodeError as exc:
        raise SpotError(str(exc)) from None
    if not len(arrays[LANDMARKS_STREAM]):
        raise SpotError(f"{path}: no video frames")
    return Recording(str(path), rate, arrays)


def add_gemma(rec: Recording, classify: WindowClassifier, config: SpotConfig, device: str) -> None:
    """Gemma features of the video's frames that `config`'s windows read, when the
    checkpoint reads them (a second decoding pass, a batch of frames in memory at a time)."""
    from featurestore.extract import DecodeError

    if not classify.uses_gemma:
        return
    try:
        rec.arrays[GEMMA_STREAM] = _video_gemma(
            Path(rec.path), rec.fps, rec.frames, classify, config, device
        )
    except DecodeError as exc:
        raise SpotError(str(exc)) from None


def _video_landmarks(path: Path, fps: float, face: bool) -> dict[str, np.ndarray]:
    from featurestore.extract import LandmarkExtractor, iter_frames

    points, masks = [], []
    with LandmarkExtractor(face=face) as holistic:
        for frame in iter_frames(path, fps):
            p, m = holistic.track(frame)
            points.append(p)
            masks.append(m)
    if not points:
        return {
            LANDMARKS_STREAM: np.zeros((0, 0, 3), np.float32),
            LANDMARK_MASK_STREAM: np.zeros((0, 0), bool),
        }
    return {LANDMARKS_STREAM: np.stack(points), LANDMARK_MASK_STREAM: np.stack(masks)}


def _video_gemma(
    path: Path,
    fps: float,
    frames: int,
    classify: WindowClassifier,
    config: SpotConfig,
    device: str,
) -> np.ndarray:
    """(frames, D) float16 features (as stores keep them), computed for the frames windows read (zeros elsewhere),
    a batch of frames in memory at a time."""
    from featurestore.extract import iter_frames

    encoder = load_checkpoint_encoder(classify, device)
    wanted = set(used_frames(frames, classify.num_frames, config).tolist())
    out = np.zeros((frames, encoder.feature_dim), np.float16)
    batch: list[np.ndarray] = []
    rows: list[int] = []
    for index, frame in enumerate(iter_frames(path, fps)):
        if index >= frames:
            break
        if index in wanted:
            batch.append(frame)
            rows.append(index)
        if len(batch) == encoder.batch_size:
            out[rows] = encoder.encode(np.stack(batch))
            batch, rows = [], []
    if batch:
        out[rows] = encoder.encode(np.stack(batch))
    return out


def load_checkpoint_encoder(classify: WindowClassifier, device: str):
    """The encoder that made the checkpoint's features, or SpotError if it cannot be rebuilt
    exactly (another revision, weights not here): features from another encoder would be
    classified as nonsense without a word."""
    from featurestore.extract import EncoderError, load_encoder

    fp = classify.encoder
    try:
        encoder = load_encoder(
            fp.get("model_id", ""),
            device,
            fp.get("pooling", "mean_soft_tokens"),
            dtype=fp.get("dtype"),
            revision=fp.get("revision"),
        )
    except EncoderError as exc:
        raise SpotError(f"checkpoint {classify.checkpoint_path}: its encoder: {exc}") from None
    diff = fingerprint_diff(fp, encoder.fingerprint, "rebuilt")
    if diff:
        raise SpotError(
            f"checkpoint {classify.checkpoint_path}: the encoder rebuilt from it differs ({diff})"
        )
    return encoder
