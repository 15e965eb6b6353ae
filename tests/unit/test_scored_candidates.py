"""The round's scored candidates: all of them, or one seeded subset shared by scoring and CEAL."""

from __future__ import annotations

import numpy as np

from al_core.config import Params, with_overrides
from al_core.pipeline import RoundData, scored_candidates


def _data(r: int, n: int = 50) -> RoundData:
    cand = np.arange(3, n, dtype=np.int64)
    return RoundData(r, np.arange(n).astype(str), np.zeros((n, 2)), np.arange(3), np.zeros(3, np.int64), cand)


def test_without_pool_subset_every_candidate_is_scored():
    data = _data(1)
    assert np.array_equal(scored_candidates(Params(), data), data.candidate_idx)


def test_pool_subset_is_a_sorted_seeded_subset_of_the_candidates_per_round():
    params = with_overrides(Params(), **{"acquisition.pool_subset": 10})
    a = scored_candidates(params, _data(1))
    assert len(a) == 10 and np.all(np.diff(a) > 0) and set(a) <= set(_data(1).candidate_idx)
    assert np.array_equal(a, scored_candidates(params, _data(1)))  # the same subset for train and score
    assert not np.array_equal(a, scored_candidates(params, _data(2)))  # a fresh one each round
    other_seed = with_overrides(params, seed=7)
    assert not np.array_equal(a, scored_candidates(other_seed, _data(1)))
    small = _data(1, n=12)  # fewer candidates than the subset: all of them
    assert np.array_equal(scored_candidates(params, small), small.candidate_idx)
