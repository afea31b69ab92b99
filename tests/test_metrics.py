"""keras_rnnreg.metrics against hand-computed values, padding included, on every backend."""

import math

import keras
import numpy as np
import pytest

from keras_rnnreg import metrics
from tests.conftest import to_numpy

LN2 = math.log(2.0)


def _rolls():
    """Two sequences of 3 timesteps; sequence 1 has one padded timestep at the front."""
    y = np.zeros((2, 3, 88), np.float32)
    p = np.full((2, 3, 88), 0.5, np.float32)
    # seq 0, t 0: note 0 on, predicted 0.8; the other 87 notes off, predicted 0.1
    y[0, 0, 0] = 1.0
    p[0, 0] = 0.1
    p[0, 0, 0] = 0.8
    # seq 0, t 1: notes 3 and 5 on; predicted 0.9 and 0.2; the rest 0.5
    y[0, 1, [3, 5]] = 1.0
    p[0, 1, 3], p[0, 1, 5] = 0.9, 0.2
    # seq 0, t 2: silence, everything predicted 0.5
    # seq 1, t 0: padding (garbage that must not count)
    y[1, 0] = 1.0
    p[1, 0] = 0.01
    # seq 1, t 1: note 7 on, predicted 0.6; note 8 off, predicted 0.7; the rest 0.5
    y[1, 1, 7] = 1.0
    p[1, 1, 7], p[1, 1, 8] = 0.6, 0.7
    # seq 1, t 2: silence, everything predicted 0.5
    mask = np.array([[1, 1, 1], [0, 1, 1]], np.float32)
    return y, p, mask


def _hand_nll():
    steps = [
        -math.log(0.8) - 87 * math.log(0.9),
        -math.log(0.9) - math.log(0.2) + 86 * LN2,
        88 * LN2,
        -math.log(0.6) - math.log(0.3) + 86 * LN2,
        88 * LN2,
    ]
    return sum(steps) / len(steps)


def test_nll_per_timestep_by_hand():
    y, p, mask = _rolls()
    assert metrics.nll_per_timestep(y, p, mask) == pytest.approx(_hand_nll(), rel=1e-6)


def test_nll_counts_every_timestep_equally_not_every_sequence():
    y = np.zeros((2, 4, 88))
    p = np.full((2, 4, 88), 0.5)
    p[0, 3] = 0.25  # the one-step sequence 0 (three padded steps before it)
    mask = np.array([[0, 0, 0, 1], [1, 1, 1, 1]])
    one_step = -88 * math.log(0.75)
    expected = (one_step + 4 * 88 * LN2) / 5  # not (one_step + 88 ln 2) / 2
    assert metrics.nll_per_timestep(y, p, mask) == pytest.approx(expected, rel=1e-9)


def test_nll_without_mask_and_single_sequence():
    y, p, _ = _rolls()
    whole = metrics.nll_per_timestep(y, p)
    per_seq = [metrics.nll_per_timestep(y[i], p[i]) for i in range(2)]
    assert whole == pytest.approx(np.mean(per_seq), rel=1e-9)  # equal lengths: equal weight


def test_nll_from_logits_matches_probabilities():
    y, p, mask = _rolls()
    logits = np.log(p) - np.log1p(-p)
    expected = metrics.nll_per_timestep(y, p, mask)
    assert metrics.nll_per_timestep(y, logits, mask, from_logits=True) == pytest.approx(expected)


def test_frame_accuracy_by_hand():
    y, p, mask = _rolls()
    # seq 0 t0: TP 1 (0.8). t1: note 3 TP (0.9), note 5 FN (0.2). t2: nothing (0.5 is not > 0.5).
    # seq 1 t1: note 7 TP (0.6), note 8 FP (0.7). Padding (seq 1 t0) excluded.
    tp, fp, fn = 3, 1, 1
    assert metrics.frame_counts(y, p, mask) == (tp, fp, fn)
    assert metrics.frame_accuracy(y, p, mask) == pytest.approx(tp / (tp + fp + fn))
    assert metrics.frame_accuracy(np.zeros((2, 88)), np.zeros((2, 88))) == 0.0


def test_bits_per_character_by_hand():
    y = np.array([[0, 1, 2], [3, 3, 0]])
    p = np.full((2, 3, 4), 0.25)
    p[0, 1] = [0.1, 0.5, 0.2, 0.2]
    mask = np.array([[1, 1, 1], [1, 1, 0]])
    expected = (4 * 2.0 + 1.0) / 5  # four uniform picks (2 bits) and one p = 0.5 (1 bit)
    assert metrics.bits_per_character(y, p, mask) == pytest.approx(expected)
    logits = np.log(p)
    assert metrics.bits_per_character(y, logits, mask, from_logits=True) == pytest.approx(expected)


def test_edit_distance_and_phone_error_rate():
    assert metrics.edit_distance("kitten", "sitting") == 3
    assert metrics.edit_distance([], ["a", "b"]) == 2
    assert metrics.edit_distance(["a", "b"], []) == 2
    assert metrics.edit_distance(["sil", "ah"], ["sil", "ah"]) == 0
    refs = [["a", "b", "c"], ["d"]]
    hyps = [["a", "c"], ["d", "e"]]
    assert metrics.phone_error_rate(refs, hyps) == pytest.approx(2 / 4)


def test_function_errors_name_the_problem():
    y, p, mask = _rolls()
    with pytest.raises(ValueError, match="same shape"):
        metrics.nll_per_timestep(y, p[:, :2])
    with pytest.raises(ValueError, match="mask"):
        metrics.nll_per_timestep(y, p, mask[:, :2])
    with pytest.raises(ValueError, match="selects no timestep"):
        metrics.nll_per_timestep(y, p, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="ids outside"):
        metrics.bits_per_character(np.array([[5]]), np.full((1, 1, 4), 0.25))
    with pytest.raises(ValueError, match="one hypothesis per reference"):
        metrics.phone_error_rate([["a"]], [])


def test_keras_metrics_accumulate_to_the_split_value():
    y, p, mask = _rolls()
    nll = metrics.NLLPerTimestep()
    acc = metrics.FrameAccuracy()
    for sl in (slice(0, 1), slice(1, 2)):  # two batches of different weight totals
        nll.update_state(y[sl], p[sl], sample_weight=mask[sl])
        acc.update_state(y[sl], p[sl], sample_weight=mask[sl])
    assert float(to_numpy(nll.result())) == pytest.approx(_hand_nll(), rel=1e-5)
    assert float(to_numpy(acc.result())) == pytest.approx(3 / 5, rel=1e-6)
    nll.reset_state()
    acc.reset_state()
    assert float(to_numpy(nll.result())) == 0.0
    nll.update_state(y, p)  # no sample_weight: every timestep counts
    assert float(to_numpy(nll.result())) == pytest.approx(metrics.nll_per_timestep(y, p), rel=1e-5)


def test_keras_metrics_from_logits():
    y, p, mask = _rolls()
    logits = np.log(p) - np.log1p(-p)
    nll = metrics.NLLPerTimestep(from_logits=True)
    nll.update_state(y, logits, sample_weight=mask)
    assert float(to_numpy(nll.result())) == pytest.approx(_hand_nll(), rel=1e-5)
    acc = metrics.FrameAccuracy(from_logits=True)
    acc.update_state(y, logits, sample_weight=mask)
    assert float(to_numpy(acc.result())) == pytest.approx(3 / 5, rel=1e-6)


def test_bits_per_character_metric():
    y = np.array([[0, 1, 2], [3, 3, 0]])
    p = np.full((2, 3, 4), 0.25, np.float32)
    p[0, 1] = [0.1, 0.5, 0.2, 0.2]
    mask = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
    m = metrics.BitsPerCharacter()
    m.update_state(y, p, sample_weight=mask)
    assert float(to_numpy(m.result())) == pytest.approx(1.8, rel=1e-6)


@pytest.mark.parametrize(
    "metric",
    [
        metrics.NLLPerTimestep(name="nll", from_logits=True),
        metrics.FrameAccuracy(threshold=0.3),
        metrics.BitsPerCharacter(from_logits=True),
    ],
    ids=lambda m: type(m).__name__,
)
def test_metrics_serialize(metric):
    config = keras.saving.serialize_keras_object(metric)
    assert config["registered_name"].startswith("keras_rnnreg>")
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(metric)
    assert clone.get_config() == metric.get_config()


def test_frame_accuracy_rejects_bad_threshold():
    with pytest.raises(ValueError, match="threshold"):
        metrics.FrameAccuracy(threshold=1.5)


def test_metrics_in_evaluate_with_sample_weight_reproduce_the_functions():
    """model.evaluate over batches with (N, T) sample weights gives the whole-split numbers.

    Keras hands sample weights only to ``weighted_metrics``, hence the compile argument.
    """
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(6, 5, 88)).astype(np.float32)
    y = (rng.uniform(size=(6, 5, 88)) < 0.1).astype(np.float32)
    w = np.ones((6, 5), np.float32)
    w[0, :3] = 0
    w[4, :1] = 0
    model = keras.Sequential([keras.Input((None, 88)), keras.layers.Dense(88, "sigmoid")])
    model.compile(
        loss="binary_crossentropy",
        weighted_metrics=[metrics.NLLPerTimestep(), metrics.FrameAccuracy()],
    )
    result = model.evaluate(x, y, sample_weight=w, batch_size=4, return_dict=True, verbose=0)
    prob = to_numpy(model.predict(x, verbose=0))
    assert result["nll_per_timestep"] == pytest.approx(
        metrics.nll_per_timestep(y, prob, w), rel=1e-5
    )
    assert result["frame_accuracy"] == pytest.approx(metrics.frame_accuracy(y, prob, w), rel=1e-5)
