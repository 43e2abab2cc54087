"""The store on S3: the conformance suite, concurrent writers and SIGKILL+resume, run
against a local S3-compatible server (moto) on 127.0.0.1 reached through the standard
AWS environment variables; explicit ``storage_options`` work as well."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto")

from featurestore import create_store, open_store  # noqa: E402
from tests.featurestore.test_store_concurrency import assert_videos_equal, run_writer, write_at_once  # noqa: E402
from tests.featurestore.test_store_conformance import BackendTests  # noqa: E402
from tests.helpers import random_video, small_schema  # noqa: E402
from tests.processes import hold_env, wait_for_hold  # noqa: E402
from tests.s3_server import shared_s3_server  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def s3():
    return shared_s3_server()


@pytest.fixture
def aws_env(s3, monkeypatch):
    """Point every AWS client in this process and its children at the local server."""
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    return s3


@pytest.fixture
def store_url(aws_env) -> str:
    return f"s3://{aws_env.make_bucket()}/store.zarr"


class TestS3(BackendTests):
    """The whole backend conformance suite again, with ``store_url`` above pointing at S3."""


def test_explicit_storage_options_without_environment(s3, rng, monkeypatch):
    for key in s3.env:
        monkeypatch.delenv(key, raising=False)
    url = f"s3://{s3.make_bucket()}/deep/path/store.zarr"
    opts = s3.storage_options
    store = create_store(url, small_schema(), storage_options=opts, block_size=4)
    data = {f"v{i}": random_video(rng) for i in range(6)}
    with store.writer() as w:
        for vid, arrays in data.items():
            w.put(vid, arrays, label=1, split="train")
    reader = open_store(url, storage_options=opts)
    assert reader.ids() == sorted(data)
    batch = reader.get_many(["v5", "v0"])
    np.testing.assert_array_equal(batch.arrays["landmarks"][0], data["v5"]["landmarks"])
    assert [len(b) for b in reader.blocks()] == [4, 2]
    assert reader.verify() == []


@pytest.mark.slow
def test_three_writer_processes_at_once_on_s3(store_url):
    write_at_once(store_url, processes=3, per_process=40, block_size=8)
    assert open_store(store_url).info()["segments"] == 3


@pytest.mark.slow
def test_sigkill_mid_write_then_resume_on_s3(store_url, tmp_path):
    dim, count = 512, 48
    create_store(store_url, small_schema(dim=dim), block_size=8)
    held = tmp_path / "held"
    env = hold_env(8, held)  # the writer holds after its first block of 8
    proc = run_writer(store_url, "v", 3, count, dim, start_new_session=True, env=env)
    line = proc.stdout.readline()  # one block committed, more on the way
    assert line.startswith("committed"), line
    wait_for_hold(proc, held)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    store = open_store(store_url)
    ids = store.ids()
    assert 8 <= len(ids) < count and len(ids) % 8 == 0  # whole committed blocks only
    assert store.verify() == []
    before = {v: (store.entry(v).segment, store.entry(v).block) for v in ids}
    out, _ = run_writer(store_url, "v", 3, count, dim).communicate(timeout=300)
    assert "finished" in out
    store = open_store(store_url)
    assert len(store) == count and store.verify() == []
    assert_videos_equal(store, "v", 3, store.ids(), dim)
    assert {v: (store.entry(v).segment, store.entry(v).block) for v in before} == before


def test_cli_reaches_s3_with_storage_option_flags(s3, rng, monkeypatch, capsys):
    from featurestore.cli import main

    for key in s3.env:
        monkeypatch.delenv(key, raising=False)
    url = f"s3://{s3.make_bucket()}/cli.zarr"
    store = create_store(url, small_schema(), storage_options=s3.storage_options)
    with store.writer() as w:
        w.put("v0", random_video(rng), label=2, split="val")
    flags = [f"--storage-option=endpoint_url={s3.endpoint}", "--storage-option=key=testing",
             "--storage-option=secret=testing"]  # fmt: skip
    assert main([*flags, "ls", url]) == 0
    assert "v0" in capsys.readouterr().out
    assert main([*flags, "verify", url]) == 0


def test_feature_set_added_read_compacted_and_dropped_on_s3(store_url, rng):
    store = create_store(store_url, small_schema(), block_size=4)
    with store.writer() as w:
        for i in range(6):
            w.put(f"v{i}", random_video(rng), label=0)
    rows = {v: rng.standard_normal((4, 6)).astype(np.float16) for v in store.ids()}
    store.add_feature_set("siglip", {"model_id": "test-siglip"}, (4, 6))
    with store.feature_writer("siglip") as w:
        for vid, row in rows.items():
            w.put(vid, row)
    reader = open_store(store_url, "r+")
    batch = reader.get_many(reader.ids(), ["landmarks", "siglip"])
    np.testing.assert_array_equal(batch.arrays["siglip"], [rows[v] for v in batch.ids])
    np.testing.assert_array_equal(reader.get("v3", ["siglip"]).arrays["siglip"], rows["v3"])
    reader.compact()
    assert reader.verify() == [] and reader.feature_ids("siglip") == set(rows)
    reader.drop_feature_set("siglip")
    assert "siglip" not in open_store(store_url).schema.all_streams
