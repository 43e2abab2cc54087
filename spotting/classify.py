"""A checkpoint as a function from windows of T frames to class probabilities.

What the spotting core needs of a model, and nothing else: its T, its labels, which
streams it reads, which of its classes mean "no sign", and probabilities for a batch of
windows. The forward is the model's own (`model_inputs`, as the trainer and the server
call it), so a checkpoint spots exactly as it classifies.
"""

from __future__ import annotations

import numpy as np
import torch

from model import GEMMA_STREAM, LANDMARK_MASK_STREAM, LANDMARKS_STREAM, Checkpoint

HAND_PARTS = ("left_hand", "right_hand")
#: Glosses that name "no sign here" (traduttore's `-`, and the usual spellings elsewhere).
REST_GLOSSES = frozenset({"-", "_", "rest", "none", "no-sign", "nosign", "<rest>", "blank"})


class SpotError(ValueError):
    """Input that cannot be spotted; the message names the file and the reason."""


class WindowClassifier:
    """Class probabilities of windows already resampled to the checkpoint's T."""

    def __init__(self, checkpoint: Checkpoint, batch_size: int = 512, path: str = "checkpoint"):
        self.checkpoint = checkpoint
        self.checkpoint_path = path
        """Where the checkpoint came from, for messages."""
        self.encoder = dict(checkpoint.encoder or {})
        self.modalities = checkpoint.config.modalities
        self.model = checkpoint.model.eval()
        self.batch_size = batch_size
        self.num_frames = int(checkpoint.num_frames)
        self.labels = dict(checkpoint.labels)
        self.num_classes = int(checkpoint.config.num_classes)
        self.uses_gemma = checkpoint.config.uses_visual
        self.uses_landmarks = checkpoint.config.uses_landmarks
        self.rest_ids = [i for i, g in self.labels.items() if g.strip().lower() in REST_GLOSSES]
        parts = list(checkpoint.config.part_names) if self.uses_landmarks else []
        self.hand_columns = [parts.index(p) for p in HAND_PARTS if p in parts]
        self.face = "face" in parts
        self.device = next(self.model.parameters()).device

    @property
    def streams(self) -> list[str]:
        """The per-frame streams a window must hold for this model."""
        out = [GEMMA_STREAM] if self.uses_gemma else []
        return out + ([LANDMARKS_STREAM, LANDMARK_MASK_STREAM] if self.uses_landmarks else [])

    def gloss(self, label: int) -> str:
        return self.labels.get(label, str(label))

    def __call__(self, windows: dict[str, np.ndarray]) -> np.ndarray:
        """(W, num_classes) float32 softmax for windows keyed by stream, each (W, T, ...)."""
        count = len(next(iter(windows.values())))
        out = np.empty((count, self.num_classes), np.float32)
        with torch.inference_mode():
            for start in range(0, count, self.batch_size):
                part = {
                    name: torch.from_numpy(np.ascontiguousarray(a[start : start + self.batch_size]))
                    for name, a in windows.items()
                }
                logits = self.model(
                    gemma=_float(part.get(GEMMA_STREAM), self.device),
                    landmarks=_float(part.get(LANDMARKS_STREAM), self.device),
                    landmark_mask=part.get(LANDMARK_MASK_STREAM),
                )
                out[start : start + len(logits)] = logits.float().softmax(-1).cpu().numpy()
        return out


def _float(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device=device, dtype=torch.float32)
