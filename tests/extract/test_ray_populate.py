"""Population with a local Ray (2 CPUs) into a store on a local S3 server (moto, 127.0.0.1):
bit-for-bit equal to a local populate of the same clips, each worker in its own segment,
resumable, and a worker killed mid-run loses nothing once the run (or a rerun) ends."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("s3fs")
pytest.importorskip("moto")

from featurestore import open_store  # noqa: E402
from featurestore.extract import (  # noqa: E402
    ManifestEntry,
    RaySchedulingError,
    populate,
    populate_with_ray,
    read_manifest,
    synthesize,
)
from tests.s3_server import shared_s3_server  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# Two encoder actors at half a CPU each leave one CPU for the decode/landmark tasks.
RAY = dict(num_workers=2, cpus_per_worker=0.5, cpus_per_task=1, progress=False)


@pytest.fixture(scope="module")
def s3():
    return shared_s3_server()


@pytest.fixture(scope="module")
def ray_local():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[ManifestEntry]:
    """Six tiny clips over two glosses and one file that is not a video."""
    folder = tmp_path_factory.mktemp("clips")
    entries = read_manifest(synthesize(folder, classes=2, per_class=3, frames=20, size=(64, 64)))
    broken = folder / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 50)
    return [*entries, ManifestEntry("broken", broken, gloss="sign00", split="train")]


@pytest.fixture(scope="module")
def local_store(clips, tmp_path_factory) -> str:
    url = str(tmp_path_factory.mktemp("local") / "local.zarr")
    summary = populate(url, clips, encoder="tiny-random", workers=1, progress=False)
    assert summary.done == 6 and set(summary.failed) == {"broken"}
    return url


def s3_url(s3) -> str:
    return f"s3://{s3.make_bucket()}/{uuid.uuid4().hex[:6]}.zarr"


def assert_same_store(expected_url: str, url: str, storage_options: dict) -> None:
    """Same ids, metadata, failures, schema and arrays (bit for bit, same dtypes)."""
    want, got = open_store(expected_url), open_store(url, storage_options=storage_options)
    assert got.ids() == want.ids()
    assert got.labels == want.labels and got.schema.encoder == want.schema.encoder
    assert got.schema.streams == want.schema.streams
    assert set(got.failures()) == set(want.failures()) == {"broken"}
    assert got.failures()["broken"].startswith("not_video:")
    for vid in want.ids():
        a, b = want.get(vid), got.get(vid)
        assert (b.label, b.gloss, b.split, b.source) == (a.label, a.gloss, a.split, a.source)
        for stream, arr in a.arrays.items():
            assert b.arrays[stream].dtype == arr.dtype, (vid, stream)
            np.testing.assert_array_equal(b.arrays[stream], arr, err_msg=f"{vid} {stream}")
    assert got.verify() == []


def test_ray_populate_equals_local_populate_and_resumes(ray_local, s3, clips, local_store):
    url, opts = s3_url(s3), s3.storage_options
    shards = []
    summary = populate_with_ray(url, clips, storage_options=opts, shard_size=2,
                                on_shard=shards.append, **RAY)  # fmt: skip
    assert summary.done == 6 and set(summary.failed) == {"broken"} and not summary.lost
    assert summary.frames_encoded == 6 * 16
    assert_same_store(local_store, url, opts)

    # each worker wrote its own segment and no other: writers never share objects
    store = open_store(url, storage_options=opts)
    worker_of = {}
    for result in shards:
        assert {store.entry(v).segment for v in result.ids} <= {result.segment}
        assert worker_of.setdefault(result.segment, result.worker) == result.worker
    assert sorted(v for r in shards for v in r.ids) == store.ids()
    assert len(set(worker_of.values())) == len(worker_of) == 2

    # resume: committed videos are skipped, the broken one is tried (and fails) again
    again = populate_with_ray(url, clips, storage_options=opts, **RAY)
    assert again.done == 0 and again.skipped == 6 and set(again.failed) == {"broken"}
    store.refresh()
    assert len({store.entry(v).segment for v in store.ids()}) == 2


def kill_first_worker_after_its_first_commit():
    """on_shard hook: SIGKILL-like ``ray.kill`` of a worker that has another shard queued."""
    killed: list[str] = []

    def hook(result) -> None:
        if not killed and result.done:
            killed.append(result.worker)
            ray.kill(ray.get_actor(result.worker))

    return hook, killed


def test_killed_worker_is_replaced_and_its_shards_redone(ray_local, s3, clips, local_store):
    url, opts = s3_url(s3), s3.storage_options
    hook, killed = kill_first_worker_after_its_first_commit()
    summary = populate_with_ray(
        url, clips, storage_options=opts, shard_size=1, on_shard=hook, **RAY
    )
    assert killed and summary.worker_restarts >= 1
    assert summary.done == 6 and not summary.lost and set(summary.failed) == {"broken"}
    assert_same_store(local_store, url, opts)


def test_killed_worker_without_retries_loses_nothing_after_a_resume(
    ray_local, s3, clips, local_store
):
    url, opts = s3_url(s3), s3.storage_options
    hook, killed = kill_first_worker_after_its_first_commit()
    summary = populate_with_ray(url, clips, storage_options=opts, shard_size=1, max_retries=0,
                                on_shard=hook, **RAY)  # fmt: skip
    assert killed and summary.lost, "the dead worker's queued shard is reported lost"
    store = open_store(url, storage_options=opts)
    assert store.verify() == []  # nothing half-written is visible
    good = {e.video_id for e in clips} - {"broken"}
    assert set(store.ids()) == good - set(summary.lost)
    assert summary.done == len(store.ids())

    again = populate_with_ray(url, clips, storage_options=opts, **RAY)
    assert again.done == len(good & set(summary.lost)) and not again.lost
    assert again.skipped == len(good) - again.done
    assert_same_store(local_store, url, opts)


@pytest.mark.timeout(400)
def test_a_replacement_worker_ray_cannot_place_stops_the_run(ray_local, s3, clips, local_store):
    """A worker dies and another job takes its CPU, so its replacement can never be placed:
    the run stops after the timeout naming the worker's resources, what was committed stays,
    and a rerun with the CPU free again finishes the store."""
    url, opts = s3_url(s3), s3.storage_options
    hogs = []

    def hook(result) -> None:
        if not hogs and result.done:
            ray.kill(ray.get_actor(result.worker))
            hogs.append(ray.util.placement_group([{"CPU": 1}]))  # another job takes its CPU
            ray.get(hogs[0].ready(), timeout=120)

    # 2 x 0.75 CPU workers on 2 CPUs; after the kill the hog leaves 0.25 CPU: tasks still run
    tight = dict(num_workers=2, cpus_per_worker=0.75, cpus_per_task=0.25, progress=False)
    expected = r"did not schedule an encoder worker in 10 s: it needs \{CPU: 0.75, GPU: 0\}"
    try:
        with pytest.raises(RaySchedulingError, match=expected):
            populate_with_ray(url, clips, storage_options=opts, shard_size=1, on_shard=hook,
                              schedule_timeout_s=10, **tight)  # fmt: skip
    finally:
        for hog in hogs:
            ray.util.remove_placement_group(hog)
    store = open_store(url, storage_options=opts)
    assert store.verify() == [] and 1 <= len(store.ids()) < 6  # committed videos stay

    again = populate_with_ray(url, clips, storage_options=opts, **RAY)
    assert again.skipped == len(store.ids()) and again.done == 6 - again.skipped
    assert_same_store(local_store, url, opts)
