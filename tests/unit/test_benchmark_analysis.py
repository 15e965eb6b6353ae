"""The benchmark's pure analysis and config validation (al_core.benchmark), and the protocol's
additions to al_core: balanced cold start, fixed validation split, the BatchBALD CNN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from al_core.benchmark import (
    RunResult,
    aulc,
    censored_median,
    class_balance,
    labels_to_target,
    markdown_table,
    mean_std_curve,
    parse_benchmark_config,
    summarize,
)
from al_core.errors import ConfigError

BASE = {
    "name": "t",
    "dataset": "digits",
    "model": "mlp",
    "strategies": ["random", "entropy"],
    "seeds": [0, 1],
    "initial_size": 20,
    "batch_size": 10,
    "budget": 50,
    "targets": [0.9, 0.8],
}


def test_censored_median_counts_a_seed_that_never_got_there_as_its_budget():
    assert censored_median([110.0, None, 150.0], [200, 200, 200]) == (150.0, False)
    assert censored_median([None, None, 120.0], [200, 200, 200]) == (200.0, True)  # '≥ 200'
    assert censored_median([100.0, 140.0], [200, 200]) == (120.0, False)
    with pytest.raises(ValueError, match="one bound per value"):
        censored_median([100.0], [200, 200])


def test_labels_to_target_is_the_first_crossing():
    labels, acc = [10, 20, 30, 40], [0.5, 0.8, 0.75, 0.95]
    assert labels_to_target(labels, acc, 0.8) == 20  # reached exactly at a point
    assert labels_to_target(labels, acc, 0.76) == 20  # the first crossing, not a later one
    assert labels_to_target(labels, acc, 0.9) == 40
    assert labels_to_target(labels, acc, 0.96) is None
    assert labels_to_target([40, 10, 20], [0.9, 0.1, 0.9], 0.9) == 20  # points are sorted by labels first


def test_aulc_is_the_mean_accuracy_over_the_label_range():
    assert aulc([0, 10], [0.0, 1.0]) == pytest.approx(0.5)
    assert aulc([10, 20, 30], [0.7, 0.7, 0.7]) == pytest.approx(0.7)
    # trapezoids with uneven spacing: (10·(0.2+0.4)/2 + 30·(0.4+0.8)/2) / 40
    assert aulc([0, 10, 40], [0.2, 0.4, 0.8]) == pytest.approx((3.0 + 18.0) / 40)
    assert aulc([5], [0.3]) == pytest.approx(0.3)
    assert math.isnan(aulc([], []))
    with pytest.raises(ValueError, match="one length"):
        aulc([1, 2], [0.1])


def test_mean_std_curve_over_seeds():
    c = mean_std_curve([([10, 20], [0.5, 0.7]), ([10, 20, 30], [0.7, 0.9, 0.95])])
    assert c.labels.tolist() == [10, 20, 30]
    assert c.mean.tolist() == pytest.approx([0.6, 0.8, 0.95])
    assert c.std.tolist() == pytest.approx([0.1, 0.1, 0.0])
    assert c.n.tolist() == [2, 2, 1]


def test_class_balance():
    uniform = class_balance([5] * 10)
    assert uniform["max_class_share"] == pytest.approx(0.1) and uniform["class_entropy"] == pytest.approx(1.0)
    one = class_balance([0, 9, 0])
    assert one["max_class_share"] == 1.0 and one["class_entropy"] == pytest.approx(0.0)
    assert 0 < class_balance([1, 3])["class_entropy"] < 1
    assert math.isnan(class_balance([0, 0])["class_entropy"])


def test_summary_rows_and_markdown_table():
    runs = [
        RunResult("random", 0, [20, 30, 40], [0.5, 0.7, 0.85], 2.0, [3, 3]),
        RunResult("random", 1, [20, 30, 40], [0.5, 0.8, 0.9], 4.0, [2, 4]),
        RunResult("entropy", 0, [20, 30, 40], [0.5, 0.85, 0.95], 3.0, [6, 0]),
        RunResult("entropy", 1, [20, 30, 40], [0.5, 0.6, 0.7], 3.0, [6, 0]),
    ]
    rows = summarize(runs, [0.8, 0.9])
    assert [r["strategy"] for r in rows] == ["random", "entropy"]
    rnd, ent = rows
    assert rnd["labels_to_0.8"] == (35.0, 5.0) and rnd["reached_0.8"] == 2
    assert rnd["reached_0.9"] == 1 and rnd["labels_to_0.9"][0] == 40
    assert ent["reached_0.8"] == 1 and ent["labels_to_0.8"][0] == 30
    assert rnd["seconds_per_round"] == (3.0, 1.0)
    assert ent["max_class_share"][0] == 1.0
    table = markdown_table(rows, [0.8, 0.9])
    lines = table.strip().splitlines()
    assert len(lines) == 4 and lines[2].startswith("| random | 2 | 35 ± 5 | 1.00 |")
    assert "| entropy | 2 | 30 ± 0 (1/2) | 0.86 |" in lines[3]
    none = markdown_table(summarize([RunResult("bald", 0, [20, 40], [0.1, 0.2], 1.0, [1, 1])], [0.8]), [0.8])
    assert "> 40" in none
    slow = [
        RunResult("random", 0, [20, 40], [0.5, 0.6], 1.0, [1, 1]),
        RunResult("badge", 0, [20, 40], [0.5, 0.9], 1, [1]),
    ]
    assert "| badge | 1 | 40 ± 0 | < 1.00 |" in markdown_table(summarize(slow, [0.8]), [0.8])


def test_config_is_validated_with_clear_errors():
    cfg = parse_benchmark_config(dict(BASE))
    assert cfg.targets == [0.8, 0.9] and cfg.label_grid() == [20, 30, 40, 50]
    o = cfg.job_overrides("entropy", 1)
    assert o["seed"] == 1 and o["acquisition.initial_seed"] == 1 and o["acquisition.strategy"] == "entropy"
    assert o["acquisition.label_budget"] == 60 and o["tracking.log_model"] is False and o["versioning.push"] is False
    with pytest.raises(ConfigError, match=r"unknown key 'stratgies'.*Did you mean 'strategies'"):
        parse_benchmark_config({**BASE, "stratgies": ["random"]})
    with pytest.raises(ConfigError, match=r"unknown acquisition strategy 'badg'.*Did you mean 'badge'.*Valid names"):
        parse_benchmark_config({**BASE, "strategies": ["random", "badg"]})
    with pytest.raises(ConfigError, match=r"unknown key 'training.epoch'"):
        parse_benchmark_config({**BASE, "params": {"training": {"epoch": 3}}})
    with pytest.raises(ConfigError, match=r"model.arch = 'resnet'"):
        parse_benchmark_config({**BASE, "model": "resnet"})
    with pytest.raises(ConfigError, match="below initial_size"):
        parse_benchmark_config({**BASE, "budget": 10})
    with pytest.raises(ConfigError, match="unknown dataset 'mnist2'"):
        parse_benchmark_config({**BASE, "dataset": "mnist2"})
    nested = parse_benchmark_config({**BASE, "params": {"training": {"epochs": 3}, "acquisition.mc_samples": 4}})
    assert nested.overrides()["training.epochs"] == 3 and nested.overrides()["acquisition.mc_samples"] == 4


def test_balanced_cold_start():
    from al_core.pipeline import balanced_cold_start

    y = np.random.default_rng(0).integers(0, 10, 500)
    idx = balanced_cold_start(y, 20, seed=3)
    assert len(set(idx.tolist())) == 20 and np.bincount(y[idx], minlength=10).tolist() == [2] * 10
    assert (balanced_cold_start(y, 20, seed=3) == idx).all()
    odd = balanced_cold_start(y, 23, seed=1)
    assert len(set(odd.tolist())) == 23 and sorted(np.bincount(y[odd]).tolist())[-3:] == [3, 3, 3]
    short = balanced_cold_start(np.array([0, 0, 0, 1]), 4, seed=0)  # class 1 runs short: topped up
    assert sorted(short.tolist()) == [0, 1, 2, 3]


def test_take_validation_moves_samples_out_of_the_pool():
    from al_core.data import load_dataset, take_validation
    from al_core.sources import dataset_params

    ds = load_dataset(dataset_params(name="digits"))
    pool, val = take_validation(ds, 100, seed=0)
    assert len(val.test_ids) == 100 and len(pool.pool_ids) == len(ds.pool_ids) - 100
    assert not set(val.test_ids) & set(pool.pool_ids)
    assert (pool.test_ids == ds.test_ids).all()
    assert take_validation(ds, None, 0) == (ds, None)


def test_bbald_cnn_shapes_and_split():
    from al_core.models import GeneratorDropout, NeuralClassifier, build_network

    net = build_network("bbald_cnn", (1, 28, 28), 10, hidden=128, dropout=0.5).eval()
    assert net.embed(torch.zeros(2, 784)).shape == (2, 128) and net(torch.zeros(2, 784)).shape == (2, 10)
    assert not any(isinstance(m, GeneratorDropout) for m in net.trunk.modules())  # trunk: before the 1st dropout
    assert sum(isinstance(m, GeneratorDropout) for m in net.tail.modules()) == 3
    with pytest.raises(ConfigError, match="at least 16"):
        build_network("bbald_cnn", (1, 8, 8), 10)
    rng = np.random.default_rng(0)
    X, y = rng.random((30, 784), dtype=np.float32), np.arange(30) % 10
    clf = NeuralClassifier("bbald_cnn", (1, 28, 28), 10, epochs=2, min_steps=4, epoch_samples=64, device="cpu")
    clf.fit(X, y, X_val=X[:10], y_val=y[:10])
    assert clf.n_epochs_ >= 2 and len(clf.history_.val_loss) == clf.n_epochs_
    assert clf.predict_log_proba(X[:3], mc_samples=4, seed=1).shape == (3, 4, 10)
