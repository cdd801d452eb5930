"""Importance criteria, member aggregation and the per-group selection rules."""

import keras
import numpy as np
import pytest
from tests.prune_support import small_cnn

import kprune
from kprune.scoring import criteria
from kprune.methods import selection
from kprune.scoring.recording import record_activations
from kprune.zoo import resnet20


def _group(groups, name):
    return [g for g in groups if g.name == name][0]


def test_l1_and_l2_are_filter_norms():
    model = small_cnn()
    analysis = kprune.analyze(model)
    g = _group(analysis.groups, "conv1")
    k = model.get_layer("conv1").kernel.numpy().astype(np.float64)
    np.testing.assert_allclose(criteria.group_scores(model, g, "l1", analysis=analysis),
                               np.abs(k).sum(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(criteria.group_scores(model, g, "l2", analysis=analysis),
                               np.sqrt((k ** 2).sum(axis=(0, 1, 2))), rtol=1e-6)
    d = model.get_layer("fc1").kernel.numpy().astype(np.float64)
    np.testing.assert_allclose(criteria.filter_norms(model, _group(analysis.groups, "fc1")),
                               np.abs(d).sum(0), rtol=1e-6)


def test_residual_group_aggregates_members_sum_mean_max():
    model = resnet20(input_shape=(16, 16, 1), width=4)
    analysis = kprune.analyze(model)
    g = max(analysis.groups, key=lambda g: len(g.producers))
    assert len(g.producers) >= 3  # stem / stage convs coupled through the adds
    per = []
    for p in g.producers:
        k = model.get_layer(p).kernel.numpy().astype(np.float64)
        norms = np.abs(k).reshape(-1, k.shape[-1]).sum(0)
        unit = np.zeros(g.channels)
        unit[g.channel_map(p)] = norms
        per.append(unit)
    per = np.array(per)
    for agg, want in (("sum", per.sum(0)), ("mean", per.mean(0)), ("max", per.max(0))):
        got = criteria.group_scores(model, g, "l1", aggregate=agg, analysis=analysis)
        np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(ValueError, match="aggregate"):
        criteria.group_scores(model, g, "l1", aggregate="median", analysis=analysis)


def test_activation_criteria_and_apoz():
    model = small_cnn()
    x = np.random.default_rng(0).uniform(size=(40, 8, 8, 1)).astype("float32")
    stats = record_activations(model, x)
    scores = criteria.score_groups(model, "mean_activation", stats=stats)
    att = criteria.score_groups(model, "attention", stats=stats, p=3)
    apoz = criteria.score_groups(model, "apoz", stats=stats)
    for g in stats.groups:
        np.testing.assert_allclose(scores[g.index], stats.mean_power(g, 1))
        np.testing.assert_allclose(att[g.index], stats.mean_power(g, 3))
        np.testing.assert_allclose(apoz[g.index], 1 - stats.apoz(g))
        assert np.all((apoz[g.index] >= 0) & (apoz[g.index] <= 1))
    # score_groups records the statistics itself from calibration data.
    direct = criteria.score_groups(model, "mean_activation", data=x)
    for k in scores:
        np.testing.assert_allclose(direct[k], scores[k], rtol=1e-6)
    with pytest.raises(ValueError, match="needs"):
        criteria.score_groups(model, "mean_activation")


def test_user_callables_with_and_without_stats():
    model = small_cnn()
    x = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32")
    two = lambda model, group: np.arange(group.channels, dtype=float)  # noqa: E731
    seen = []

    def three(model, group, stats):
        seen.append(stats)
        return stats.apoz(group)

    assert not criteria.needs_activations(two) and criteria.needs_activations(three)
    s2 = criteria.score_groups(model, two)
    assert all(np.array_equal(v, np.arange(len(v))) for v in s2.values())
    criteria.score_groups(model, three, data=x)
    assert seen and seen[0].count == 16
    with pytest.raises(ValueError, match="returned 3 scores"):
        criteria.score_groups(model, lambda m, g: np.ones(3))
    with pytest.raises(ValueError, match="unknown criterion"):
        criteria.score_groups(model, "l3")


def test_percentile_and_threshold_rules():
    s = np.array([5.0, 1.0, 3.0, 2.0, 4.0, 0.0, 7.0, 6.0, 9.0, 8.0])
    assert np.flatnonzero(selection.percentile_candidates(s, 0.2)).tolist() == [1, 5]
    assert not selection.percentile_candidates(s, 0.0).any()
    # Threshold rule compares scores divided by their mean (4.5).
    assert np.flatnonzero(selection.threshold_candidates(s, 0.5)).tolist() == [1, 3, 5]


def test_limits_round_to_min_channels_max_fraction_and_seed():
    s = np.arange(16, dtype=float)
    cand = s < 3
    assert selection.limit_removal(s, cand, 16).tolist() == [0, 1, 2]
    # round_to: 13 kept rounds to 12 (nearest multiple of 4).
    assert selection.limit_removal(s, cand, 16, round_to=4).tolist() == [0, 1, 2, 3]
    # Rounding would cancel the removal: go down to the next multiple.
    assert len(selection.limit_removal(s, s < 1, 16, round_to=8)) == 8
    # min_channels and max_fraction of the ORIGINAL width bound the kept count.
    assert len(selection.limit_removal(s, s < 15, 16, min_channels=5)) == 11
    assert len(selection.limit_removal(s[:10], s[:10] < 9, 16, max_fraction=0.5)) == 2
    assert len(selection.limit_removal(s[:8], s[:8] < 9, 16, max_fraction=0.5)) == 0
    # Ties are broken by the seeded permutation: same seed, same choice.
    z = np.zeros(10)
    a = selection.limit_removal(z, z == 0, 10, min_channels=7, rng=np.random.default_rng(3))
    b = selection.limit_removal(z, z == 0, 10, min_channels=7, rng=np.random.default_rng(3))
    c = selection.limit_removal(z, z == 0, 10, min_channels=7, rng=np.random.default_rng(4))
    assert a.tolist() == b.tolist() and len(a) == 3
    assert a.tolist() != c.tolist()


def test_top1_over_a_tf_dataset_equals_numpy_on_every_backend():
    """`kprune.data.predictions` over batched tf.data (tf tensors) counts every
    sample on each backend; the JAX / torch CI subsets run this file too."""
    import tensorflow as tf

    from kprune.data import accuracy_and_count, as_data
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    rng = np.random.default_rng(0)
    x, y = rng.random((50, 4)).astype("float32"), rng.integers(0, 3, 50)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    assert accuracy_and_count(model, as_data(ds)) == accuracy_and_count(model, as_data((x, y)))
    assert accuracy_and_count(model, as_data(ds))[1] == 50
