"""Feature extraction: decode clips, run frozen Gemma and MediaPipe Holistic, populate a store.

Names load on first use (PEP 562), so ``featurestore`` commands that never extract do
not pay for importing torch, transformers and MediaPipe. The layout, manifest and
sampling names live a floor down (``featurestore.layout``, ``.manifest``, ``.sampling``,
a leading dot below) and are re-exported here for the callers that import them from here.
"""

from .._lazy import lazy_getattr

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
    "open_clip": "decode",
    "DEFAULT_ENCODER": "defaults",
    "POOLINGS": "defaults",
    "PRESETS": "gemma",
    "EncoderError": "gemma",
    "GemmaEncoder": "gemma",
    "load_encoder": "gemma",
    "LandmarkExtractor": "holistic",
    "LandmarkPool": "holistic",
    "add_features": "local",
    "populate": "local",
    "add_features_with_ray": "ray",
    "populate_with_ray": "ray",
    "RaySchedulingError": "ray",
    "RayPlan": "ray",
    "RayPlanError": "ray",
    "plan_ray": "ray",
    "synthesize": "synth",
    "write_video": "synth",
    # the store's floor, re-exported: what extraction shares with the importers and the server
    "PopulateSummary": ".summary",
    "FACE_SUBSET": ".layout",
    "landmark_layout": ".layout",
    "ManifestEntry": ".manifest",
    "ManifestError": ".manifest",
    "assign_labels": ".manifest",
    "read_manifest": ".manifest",
    "read_wlasl": ".manifest",
    "scan_videos": ".manifest",
    "resolve_range": ".sampling",
    "sample_indices": ".sampling",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return __all__
