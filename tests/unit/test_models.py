import numpy as np
import pytest
import torch

from al_core.errors import ConfigError
from al_core.models import NeuralClassifier, build_network, resolve_device, stratified_split


def _data(n=80, shape=(1, 8, 8), seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    X = rng.normal(size=(n, int(np.prod(shape)))).astype(np.float32) + y[:, None] * 0.8
    return X, y


@pytest.mark.parametrize(("arch", "shape"), [("mlp", (12,)), ("cnn1d", (40,)), ("cnn2d", (1, 8, 8))])
def test_each_architecture_fits_and_predicts(arch, shape):
    X, y = _data(shape=shape)
    clf = NeuralClassifier(arch, shape, 4, hidden=16, epochs=5, device="cpu", min_steps=0).fit(X, y)
    assert clf.predict_proba(X).shape == (80, 4)
    assert torch.allclose(clf.predict_proba(X).sum(1), torch.ones(80), atol=1e-5)
    assert clf.embed(X).shape == (80, 16)
    assert clf.predict_log_proba(X, mc_samples=3).shape == (80, 3, 4)


def test_training_is_deterministic_for_a_seed_and_differs_across_seeds():
    X, y = _data()
    a = NeuralClassifier("mlp", (64,), 4, epochs=5, device="cpu", min_steps=0, seed=3).fit(X, y).predict_proba(X)
    b = NeuralClassifier("mlp", (64,), 4, epochs=5, device="cpu", min_steps=0, seed=3).fit(X, y).predict_proba(X)
    c = NeuralClassifier("mlp", (64,), 4, epochs=5, device="cpu", min_steps=0, seed=4).fit(X, y).predict_proba(X)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_training_does_not_use_the_global_rng():
    X, y = _data()
    torch.manual_seed(0)
    before = torch.get_rng_state()
    NeuralClassifier("mlp", (64,), 4, epochs=3, device="cpu", min_steps=0).fit(X, y).predict_log_proba(X, mc_samples=2)
    assert torch.equal(torch.get_rng_state(), before)


def test_mc_dropout_is_stochastic_across_passes_and_reproducible_by_seed():
    X, y = _data()
    clf = NeuralClassifier("mlp", (64,), 4, dropout=0.5, epochs=3, device="cpu", min_steps=0).fit(X, y)
    lp = clf.predict_log_proba(X, mc_samples=4, seed=1)
    assert not torch.allclose(lp[:, 0], lp[:, 1])
    assert torch.equal(lp, clf.predict_log_proba(X, mc_samples=4, seed=1))
    assert not torch.equal(lp, clf.predict_log_proba(X, mc_samples=4, seed=2))
    # deterministic pass: dropout off
    assert torch.equal(clf.predict_log_proba(X), clf.predict_log_proba(X))


def test_chunking_does_not_change_results():
    X, y = _data()
    clf = NeuralClassifier("mlp", (64,), 4, epochs=3, device="cpu", min_steps=0, chunk_size=7).fit(X, y)
    small = clf.predict_proba(X)
    clf.chunk_size = 1000
    assert torch.allclose(small, clf.predict_proba(X), atol=1e-6)


def test_early_stopping_stops_before_the_epoch_cap():
    X, y = _data(n=100)
    clf = NeuralClassifier("mlp", (64,), 4, epochs=500, patience=3, device="cpu", min_steps=0).fit(X, y)
    assert clf.n_epochs_ < 500
    assert clf.history_.best_epoch < clf.n_epochs_


def test_save_and_load_give_identical_predictions():
    X, y = _data()
    clf = NeuralClassifier("cnn2d", (1, 8, 8), 4, epochs=3, device="cpu", min_steps=0).fit(X, y)
    back = NeuralClassifier.from_bytes(clf.to_bytes(), device="cpu")
    assert torch.equal(clf.predict_proba(X), back.predict_proba(X))


def test_sample_weight_zero_ignores_samples():
    X, y = _data()
    y_noisy = y.copy()
    y_noisy[:40] = (y[:40] + 1) % 4
    w = np.r_[np.zeros(40), np.ones(40)]
    a = NeuralClassifier("mlp", (64,), 4, epochs=5, device="cpu", min_steps=0, val_fraction=0).fit(
        X, y_noisy, sample_weight=w
    )
    assert np.isfinite(a.history_.train_loss).all()


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError, match=r"model\.arch"):
        build_network("rnn", (4,), 2)
    with pytest.raises(ConfigError, match="cnn2d needs"):
        build_network("cnn2d", (4,), 2)
    with pytest.raises(ValueError, match="labels must be in"):
        NeuralClassifier("mlp", (64,), 4, device="cpu").fit(*_data()[:1], np.full(80, 9))
    with pytest.raises(RuntimeError, match="not fitted"):
        NeuralClassifier("mlp", (64,), 4).predict_proba(np.zeros((1, 64), np.float32))


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")


def test_stratified_split_keeps_every_class_in_train():
    y = np.array([0] * 10 + [1] * 10 + [2])
    tr, va = stratified_split(y, 0.2, np.random.default_rng(0))
    assert set(y[tr]) == {0, 1, 2} and len(va) == 4 and not set(tr) & set(va)


@pytest.mark.parametrize("watch", ["loss", "accuracy"])
def test_early_stopping_restores_the_best_epoch_of_the_watched_metric(watch):
    # a weak signal, a small training set and a fixed validation set: the network overfits, so
    # validation loss bottoms out epochs before validation accuracy peaks
    def data(n, seed):
        rng = np.random.default_rng(seed)
        y = np.arange(n) % 4
        return rng.normal(size=(n, 64)).astype(np.float32) + y[:, None] * 0.1, y

    (X, y), (Xv, yv) = data(40, 1), data(400, 2)
    kw = dict(hidden=32, epochs=40, patience=40, min_steps=0, lr=1e-2, device="cpu", early_stopping=watch)
    clf = NeuralClassifier("mlp", (64,), 4, **kw).fit(X, y, X_val=Xv, y_val=yv)
    h = clf.history_
    by_loss, by_acc = int(np.argmin(h.val_loss)), int(np.argmax(h.val_accuracy))
    assert by_loss != by_acc  # the two criteria disagree here, so the test tells them apart
    assert h.best_epoch == (by_loss if watch == "loss" else by_acc)
    # the restored weights are that epoch's
    acc = float((clf.predict_proba(Xv).argmax(1).numpy() == yv).mean())
    assert acc == pytest.approx(h.val_accuracy[h.best_epoch], abs=1e-6)


def test_an_unknown_early_stopping_metric_is_refused():
    with pytest.raises(ValueError, match="early_stopping must be one of loss, accuracy"):
        NeuralClassifier("mlp", (64,), 4, early_stopping="f1")
