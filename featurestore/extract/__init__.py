"""Feature extraction: decode clips, run frozen Gemma and MediaPipe Holistic, populate a store.

Names load on first use (PEP 562), so ``featurestore`` commands that never extract do
not pay for importing torch, transformers and MediaPipe.
"""

from importlib import import_module

_EXPORTS = {
    "ClipExtractor": "clip",
    "extraction_streams": "clip",
    "stream_specs": "clip",
    "Clip": "decode",
    "DecodeError": "decode",
    "count_frames": "decode",
    "decode_clip": "decode",
    "frame_rate": "decode",
    "iter_frames": "decode",
    "DEFAULT_ENCODER": "defaults",
    "POOLINGS": "defaults",
    "PRESETS": "gemma",
    "EncoderError": "gemma",
    "GemmaEncoder": "gemma",
    "load_encoder": "gemma",
    "FACE_SUBSET": "holistic",
    "LandmarkExtractor": "holistic",
    "LandmarkPool": "holistic",
    "landmark_layout": "holistic",
    "Entry": "manifest",
    "ManifestEntry": "manifest",
    "ManifestError": "manifest",
    "assign_labels": "manifest",
    "read_manifest": "manifest",
    "read_wlasl": "manifest",
    "scan_videos": "manifest",
    "PopulateSummary": "summary",
    "add_features": "populate_local",
    "populate": "populate_local",
    "add_features_with_ray": "populate_ray",
    "populate_with_ray": "populate_ray",
    "RaySchedulingError": "populate_ray",
    "RayPlan": "ray_plan",
    "RayPlanError": "ray_plan",
    "plan_ray": "ray_plan",
    "resolve_range": "sampling",
    "sample_indices": "sampling",
    "synthesize": "synth",
    "write_video": "synth",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
