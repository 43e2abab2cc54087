"""Ray population against local populate on the same synthetic clips, in the same run.

Ours: ``populate_with_ray`` on a local Ray (``--workers`` encoder actors, decode and
Holistic as one-CPU tasks). Baseline: ``populate`` in one process with as many Holistic
processes as CPUs. Both use tiny-random with landmarks on, so the work per video is the
same; the difference is Ray's cost: start-up (actors import torch and build the encoder;
``ray.init`` itself is timed apart) and the per-video overhead of tasks, object transfers
and actor calls. On one machine Ray cannot be faster; its point is that the same run
spreads over many. ``--s3`` puts both stores on a local S3 server (moto) instead of disk.

Rows: end-to-end and steady (after start-up) videos/s with landmarks on (ratio = ours /
baseline), start-up seconds; then both again with landmarks off, where a video is only a
decode and a tiny forward pass, so the difference per video is Ray's own overhead (tasks,
object transfers, actor calls): ``overhead_per_video_ms`` = ours minus baseline.

    python benchmarks/ray_populate.py [--quick] [--json FILE] [--clips 48] [--workers 2] [--s3]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from dataclasses import replace

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # tests.s3_server
from common import Row, parser, report  # noqa: E402

from featurestore import open_store  # noqa: E402
from featurestore.extract import populate, read_manifest, synthesize  # noqa: E402


def run_local(url, entries, cpus, storage_options, landmarks=True):
    return populate(url, entries, encoder="tiny-random", workers=cpus, progress=False,
                    storage_options=storage_options, landmarks=landmarks)  # fmt: skip


def run_ray(url, entries, workers, storage_options, landmarks=True):
    from featurestore.extract import populate_with_ray

    # the tiny encoder needs no CPU of its own: every CPU goes to decode/Holistic tasks,
    # as every CPU goes to Holistic processes in the baseline
    return populate_with_ray(url, entries, num_workers=workers, cpus_per_worker=0,
                             cpus_per_task=1, progress=False, storage_options=storage_options,
                             landmarks=landmarks)  # fmt: skip


def steady(summary) -> float:
    """Seconds per video after start-up."""
    return (summary.elapsed_s - summary.startup_s) / max(1, summary.done)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, help="clips to extract (default 48, quick 12)")
    p.add_argument("--workers", type=int, default=2, help="Ray encoder actors")
    p.add_argument("--s3", action="store_true", help="stores on a local moto S3 server")
    args = p.parse_args()
    clips = args.clips or (12 if args.quick else 48)
    per_class = max(1, clips // 4)
    cpus = os.cpu_count() or 2

    import ray

    with tempfile.TemporaryDirectory() as tmp, _storage(args.s3, tmp) as (base, opts):
        entries = read_manifest(synthesize(tmp, classes=4, per_class=per_class, frames=24))
        print(f"{len(entries)} clips, {cpus} CPUs, stores under {base}")
        local = run_local(f"{base}/local.zarr", entries, cpus, opts)
        print("local:", local.format())
        # without landmarks a video costs ~20 ms: 4x the clips (same files, new ids) for a
        # steadier per-video figure
        many = [replace(e, video_id=f"{e.video_id}-{k}") for k in range(4) for e in entries]
        bare = run_local(f"{base}/local-bare.zarr", many, cpus, opts, landmarks=False)
        print("local, no landmarks:", bare.format())
        started = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        ray_init_s = time.perf_counter() - started
        try:
            ours = run_ray(f"{base}/ray.zarr", entries, args.workers, opts)
            ours_bare = run_ray(f"{base}/ray-bare.zarr", many, args.workers, opts, False)
        finally:
            ray.shutdown()
        print(f"ray ({args.workers} workers, ray.init {ray_init_s:.1f}s):", ours.format())
        print("ray, no landmarks:", ours_bare.format())
        assert local.done == ours.done == len(entries), "every run must extract every clip"
        assert bare.done == ours_bare.done == len(many), "every run must extract every clip"
        assert (
            open_store(f"{base}/ray.zarr", storage_options=opts).ids()
            == open_store(f"{base}/local.zarr", storage_options=opts).ids()
        )

    rows = [
        Row("videos_per_s", ours.videos_per_s, local.videos_per_s,
            ours.videos_per_s / local.videos_per_s, "videos/s"),
        Row("steady_videos_per_s", 1 / steady(ours), 1 / steady(local),
            steady(local) / steady(ours), "videos/s"),
        Row("startup_s", ours.startup_s, local.startup_s,
            local.startup_s / max(ours.startup_s, 1e-9), "s"),
        Row("ray_init_s", ray_init_s, None, None, "s"),
        Row("no_landmarks_ms_per_video", 1e3 * steady(ours_bare), 1e3 * steady(bare),
            steady(bare) / steady(ours_bare), "ms"),
        Row("overhead_per_video_ms", 1e3 * (steady(ours_bare) - steady(bare)), None, None, "ms"),
    ]  # fmt: skip
    where = "local S3 (moto)" if args.s3 else "local disk"
    report(rows, args.json, f"populate: Ray {args.workers} workers (ours) vs local ({where})")


class _storage:
    """Where both stores go: a folder, or a bucket on a moto server in a child process."""

    def __init__(self, s3: bool, tmp: str):
        self.s3, self.tmp, self._server = s3, tmp, None

    def __enter__(self):
        if not self.s3:
            return self.tmp, None
        from tests.s3_server import process_s3_server

        self._server = process_s3_server()
        server = self._server.__enter__()
        os.environ.update(server.env)  # the Ray workers inherit it
        return f"s3://{server.make_bucket(f'bench-{uuid.uuid4().hex[:8]}')}", None

    def __exit__(self, *exc):
        if self._server is not None:
            self._server.__exit__(*exc)


if __name__ == "__main__":
    main()
