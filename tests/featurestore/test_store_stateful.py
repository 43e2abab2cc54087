"""Random sequences of put / overwrite / flush / get / reopen / compact / delete, of label
claims from a second, stale view of the store racing the writer's, and of adding, reading
and dropping a feature set, against a dict model."""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from featurestore import InvalidVideoError, SchemaMismatchError, create_store, open_store
from tests.helpers import small_schema

IDS = st.sampled_from([f"id{i}" for i in range(12)])
GLOSSES = st.sampled_from(["hello", "owl", "cat", "dog", "yes", "zebra"])
FEATURE = "extra"
ENCODERS = st.sampled_from([{"model_id": "enc-a", "seed": 1}, {"model_id": "enc-b", "seed": 2}])


class StoreMachine(RuleBasedStateMachine):
    suffix = ".zarr"

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp()
        self.url = f"{self.dir}/m{self.suffix}"
        self.store = create_store(self.url, small_schema(), block_size=3)
        self.writer = self.store.writer()
        self.committed: dict[str, tuple[int, int]] = {}  # id -> (seed, label)
        self.buffered: dict[str, tuple[int, int]] = {}
        self.encoder: dict | None = None  # the added set's encoder, None while it is absent
        self.features: dict[str, int] = {}  # id -> seed of its row in the added set
        self.labels = dict(self.store.labels)  # the label map every claim must agree with
        self.other = open_store(self.url, "r+")  # another process's view, never refreshed

    def _claimed(self, glosses) -> None:
        """The model's map after claims: new glosses, sorted, take the next labels."""
        for gloss in sorted(set(glosses) - set(self.labels.values())):
            self.labels[max(self.labels) + 1] = gloss

    def teardown(self):
        self.writer.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def arrays(seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {
            "gemma": rng.standard_normal((4, 8)).astype(np.float16),
            "landmarks": rng.standard_normal((4, 75, 3)).astype(np.float32),
            "landmark_mask": rng.random((4, 3)) > 0.5,
        }

    def _sync_commits(self):
        if not self.writer.pending:
            self.committed.update(self.buffered)
            self.buffered.clear()

    @rule(vid=IDS, seed=st.integers(0, 10**6), label=st.integers(0, 2))
    def put(self, vid, seed, label):
        exists = vid in self.committed or vid in self.buffered
        if exists and not self.writer.overwrite:
            with pytest.raises(InvalidVideoError, match="already in the store"):
                self.writer.put(vid, self.arrays(seed), label=label)
            return
        self.writer.put(vid, self.arrays(seed), label=label)
        self.buffered[vid] = (seed, label)
        self._sync_commits()

    @rule(vid=IDS, seed=st.integers(0, 10**6), gloss=GLOSSES)
    def put_gloss(self, vid, seed, gloss):
        """A writer given only the gloss claims its label (or takes the one it has)."""
        if vid in self.committed or vid in self.buffered:
            return  # put covers refusals and overwrites
        self.writer.put(vid, self.arrays(seed), gloss=gloss)
        self._claimed([gloss])
        label = {g: n for n, g in self.labels.items()}[gloss]
        self.buffered[vid] = (seed, label)
        self._sync_commits()

    @rule(glosses=st.lists(GLOSSES, max_size=3))
    def claim_from_a_stale_view(self, glosses):
        got = self.other.claim_labels(glosses)
        self._claimed(glosses)
        assert got == self.labels

    @precondition(lambda self: bool(self.committed))
    @rule(data=st.data())
    def delete(self, data):
        vid = data.draw(st.sampled_from(sorted(self.committed)))
        overwrite = self.writer.overwrite
        self.writer.close()
        self._sync_commits()
        self.store.delete([vid])
        del self.committed[vid]
        self.features.pop(vid, None)
        self.writer = self.store.writer(overwrite=overwrite)

    @rule(overwrite=st.booleans())
    def new_writer(self, overwrite):
        self.writer.close()
        self._sync_commits()
        self.writer = self.store.writer(overwrite=overwrite)

    @rule()
    def flush(self):
        self.writer.flush()
        self._sync_commits()

    @rule()
    def reopen(self):
        self.store = open_store(self.url, "r+")
        self.writer.store = self.store

    @precondition(lambda self: bool(self.committed))
    @rule(data=st.data())
    def get(self, data):
        vid = data.draw(st.sampled_from(sorted(self.committed)))
        self.store.refresh()
        seed, label = self.committed[vid]
        video = self.store.get(vid)
        assert video.label == label
        for k, a in self.arrays(seed).items():
            np.testing.assert_array_equal(video.arrays[k], a)

    @rule()
    def compact(self):
        self.writer.close()
        self._sync_commits()
        self.store.compact()
        self.writer = self.store.writer()

    @staticmethod
    def feature_row(seed: int) -> np.ndarray:
        return np.random.default_rng(seed).standard_normal((4, 6)).astype(np.float16)

    @precondition(lambda self: bool(self.committed))
    @rule(data=st.data(), encoder=ENCODERS, seed=st.integers(0, 10**6))
    def add_feature(self, data, encoder, seed):
        if self.encoder is not None and encoder != self.encoder:
            with pytest.raises(SchemaMismatchError, match=FEATURE):
                self.store.add_feature_set(FEATURE, encoder, (4, 6))
            return
        self.store.add_feature_set(FEATURE, encoder, (4, 6))
        self.encoder = encoder
        ids = data.draw(st.lists(st.sampled_from(sorted(self.committed)), unique=True))
        with self.store.feature_writer(FEATURE, overwrite=True, block_size=2) as w:
            for i, vid in enumerate(ids):
                w.put(vid, self.feature_row(seed + i))
                self.features[vid] = seed + i

    @precondition(lambda self: self.encoder is not None)
    @rule()
    def drop_feature(self):
        self.store.drop_feature_set(FEATURE)
        self.encoder, self.features = None, {}

    @precondition(lambda self: bool(self.features))
    @rule(data=st.data())
    def get_feature(self, data):
        vid = data.draw(st.sampled_from(sorted(self.features)))
        self.store.refresh()
        video = self.store.get(vid, ["landmarks", FEATURE])
        np.testing.assert_array_equal(video.arrays[FEATURE], self.feature_row(self.features[vid]))
        seed, _ = self.committed[vid]
        np.testing.assert_array_equal(video.arrays["landmarks"], self.arrays(seed)["landmarks"])

    @invariant()
    def visible_ids_match_model(self):
        fresh = open_store(self.url)
        assert fresh.ids() == sorted(self.committed)
        assert fresh.labels == self.labels
        for vid, (_, label) in self.committed.items():
            entry = fresh.entry(vid)
            assert entry.label == label and (not entry.gloss or self.labels[label] == entry.gloss)
        if self.encoder is None:
            assert FEATURE not in fresh.schema.all_streams
        else:
            assert fresh.ids(streams=[FEATURE]) == sorted(self.features)
            batches = list(fresh.iter_batches(batch_size=5, streams=[FEATURE, "gemma"]))
            got = {v: b.arrays[FEATURE][i] for b in batches for i, v in enumerate(b.ids)}
            assert sorted(got) == sorted(self.features)
            for vid, row in got.items():
                np.testing.assert_array_equal(row, self.feature_row(self.features[vid]))


class HDF5StoreMachine(StoreMachine):
    suffix = ".h5"


TestZarrStoreMachine = StoreMachine.TestCase
TestZarrStoreMachine.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
TestHDF5StoreMachine = HDF5StoreMachine.TestCase
TestHDF5StoreMachine.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
