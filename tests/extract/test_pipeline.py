"""The overlapped pipeline on its own: failure isolation in a batch, bounded buffers."""

import time

import numpy as np

from featurestore.extract import ManifestEntry, write_video
from featurestore.extract.pipeline import Pipeline
from tests.extract.clips import indexed_frames


class FlakyEncoder:
    """Fails any batch holding an all-black clip, as a model that chokes on one input."""

    batch_size = 64

    def __init__(self):
        self.batches = []

    def encode_videos(self, videos):
        self.batches.append(len(videos))
        if any(v.max() < 10 for v in videos):
            raise RuntimeError("boom")
        return [np.full((len(v), 4), v.mean(), np.float32) for v in videos]


def _entries(tmp_path, n_good=5):
    entries = []
    for i in range(n_good):
        path = write_video(tmp_path / f"g{i}.mp4", indexed_frames(12, seed=i) + 40)
        entries.append(ManifestEntry(f"g{i}", path))
    black = write_video(tmp_path / "black.mp4", np.zeros((12, 48, 64, 3), np.uint8))
    entries.insert(2, ManifestEntry("black", black))
    entries.append(ManifestEntry("gone", tmp_path / "gone.mp4"))
    return entries


def test_one_bad_clip_in_a_batch_fails_alone(tmp_path):
    encoder = FlakyEncoder()
    pipeline = Pipeline(num_frames=4, encoder=encoder, pool=None, decode_threads=2)
    jobs = {job.entry.video_id: job for job in pipeline.run(_entries(tmp_path))}
    assert set(jobs) == {"g0", "g1", "g2", "g3", "g4", "black", "gone"}
    assert jobs["black"].error.startswith("encoder: ") and "boom" in jobs["black"].error
    assert jobs["gone"].error.startswith("missing: ")
    for vid in ("g0", "g1", "g2", "g3", "g4"):
        assert jobs[vid].error is None and jobs[vid].gemma.shape == (4, 4)
        assert jobs[vid].source["num_real_frames"] == 4 and jobs[vid].clip is None
    assert pipeline.frames_encoded == 5 * 4


def test_in_flight_videos_are_bounded(tmp_path):
    pipeline = Pipeline(num_frames=4, encoder=FlakyEncoder(), pool=None, max_inflight=2)
    entries = [e for e in _entries(tmp_path) if e.video_id.startswith("g")]
    seen = 0
    for _ in pipeline.run(entries):
        seen += 1
        time.sleep(0.2)  # a slow writer: unbounded stages would pile up finished videos
        assert pipeline._done.qsize() <= 2  # never more than max_inflight waiting
    assert seen == len(entries)


def test_closing_early_stops_the_stages(tmp_path):
    pipeline = Pipeline(num_frames=4, encoder=FlakyEncoder(), pool=None, max_inflight=1)
    run = pipeline.run([e for e in _entries(tmp_path) if e.video_id.startswith("g")])
    next(run)
    run.close()  # as on Ctrl-C in the consumer
    assert pipeline._stop.is_set()
