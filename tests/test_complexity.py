"""Complexity-driven pruning (PA / FA / MA): weights, planning, the method."""

import numpy as np
import pytest

import kprune
from kprune.core.complexity_weights import complexity_weights, group_complexity
from kprune.methods.complexity import (complexity_steps, resources, minimal_model,
                                       plan_complexity_pruning)
from kprune.core.profile import profile
from kprune.zoo import lenet5, resnet20

MODES = ("params", "macs", "memory")


def _small_resnet():
    return resnet20(input_shape=(12, 12, 1), width=4)


def _activation_sum(model):
    return sum(lp.activation_bytes for lp in profile(model).layers)


def _one_unit_delta(model, group):
    """Real profile change when one unit of `group` is removed."""
    small = kprune.remove_channels(model, group.to_layer_indices([0]))
    p, q = profile(model), profile(small)
    return {"params": p.params - q.params, "macs": p.macs - q.macs,
            "memory": _activation_sum(model) - _activation_sum(small)}


@pytest.mark.parametrize("make", [lenet5, _small_resnet])
def test_group_complexity_is_the_real_cost_of_one_channel(make):
    """Per channel, a group's complexity equals what `kprune.profile` loses
    when one of its channels is removed (the models here have no layer whose
    input and output channels are in the same group, so first order is exact)."""
    model = make()
    groups = kprune.dependency_groups(model)
    if len(groups) > 4:  # ResNet: the stem's residual group, an inner conv,
        groups = [groups[i] for i in (0, 1, 5)]  # a projection's residual group
    amounts = {mode: group_complexity(model, mode) for mode in MODES}
    for g in groups:
        delta = _one_unit_delta(model, g)
        for mode in MODES:
            assert amounts[mode][g.index] / g.channels == pytest.approx(
                delta[mode], rel=1e-9), (g.name, mode)


def test_weights_are_shares_in_group_order():
    model = lenet5()
    names = [g.name for g in kprune.dependency_groups(model)]
    assert names == ["conv1", "conv2", "fc1", "fc2"]
    for mode in MODES:
        w = complexity_weights(model, mode)
        assert sorted(w) == [0, 1, 2, 3]
        assert sum(w.values()) == pytest.approx(1.0)
        assert all(v > 0 for v in w.values())
    # conv1 (156 own params + 2400 in conv2's kernel) out of the 122,176
    # parameter-channel products of the four groups.
    assert complexity_weights(model, "params")[0] == pytest.approx(2556 / 122176)
    # Activations concentrate in the first conv, parameters in the dense layers.
    assert max(complexity_weights(model, "memory").items(), key=lambda kv: kv[1])[0] == 0
    assert max(complexity_weights(model, "params").items(), key=lambda kv: kv[1])[0] == 2
    assert complexity_weights(model, "PA") == complexity_weights(model, "params")
    with pytest.raises(ValueError, match="mode='latency'"):
        complexity_weights(model, "latency")


@pytest.mark.parametrize("mode", MODES)
def test_target_is_met_within_one_step(mode):
    model = lenet5()
    _, steps = plan_complexity_pruning(model, mode, target=0.4, seed=3, reinit=False)
    reductions = [s["reduction"][mode] for s in steps]
    assert reductions[-1] >= 0.4
    assert all(r < 0.4 for r in reductions[:-1])  # stopped at the first step that met it
    assert reductions == sorted(reductions)  # pruning never adds complexity
    # the measured values are the real profile of the returned architecture
    assert steps[-1][mode] == resources(_)[mode]


def test_target_is_met_on_a_residual_network():
    model = _small_resnet()
    small, steps = plan_complexity_pruning(model, "macs", target=0.3, seed=0,
                                           step_fraction=0.25)
    assert steps[-1]["reduction"]["macs"] >= 0.3 > steps[-2]["reduction"]["macs"]
    assert profile(small).macs == steps[-1]["macs"]
    # the Add-coupled stem group keeps one width through every residual block
    widths = {layer.name: layer.filters for layer in small.layers
              if hasattr(layer, "filters")}
    stem = widths["stem_conv"]
    assert all(widths[f"s1b{i}_conv2"] == stem for i in (1, 2, 3))
    x = np.random.default_rng(0).random((2, 12, 12, 1)).astype("float32")
    assert small(x).shape == (2, 10)


def test_absolute_budgets():
    model = lenet5()
    small, steps = plan_complexity_pruning(model, target_memory_bytes=15000, seed=0)
    assert resources(small)["memory"] <= 15000 < steps[-2]["memory"]
    small, steps = plan_complexity_pruning(model, "params", target_params=20000,
                                           target_macs=300000, seed=0)
    m = resources(small)
    assert m["params"] <= 20000 and m["macs"] <= 300000
    small, _ = plan_complexity_pruning(model, "memory", target_memory_bytes=4000,
                                       memory_dtype="int8", seed=0)
    assert profile(small).peak_activation_bytes_int8 <= 4000


def test_same_seed_same_architecture():
    model = lenet5()

    def arch(seed):
        small, steps = plan_complexity_pruning(model, "macs", target=0.3, seed=seed)
        return [s["group"] for s in steps[1:]], steps[-1]["widths"], small.get_config()

    assert arch(7) == arch(7)
    assert len({str(arch(s)[:2]) for s in range(3)}) > 1  # the draw is random


def test_each_mode_reduces_its_own_complexity():
    """After the same number of steps (same seeds), PA removes the largest
    share of parameters and MA the largest share of peak activation memory;
    FA removes more MACs than PA. MA removes even more MACs than FA on
    LeNet-5: its draws concentrate on conv1, which holds both the largest
    activations and the largest MAC share (see the module docstring)."""
    model = lenet5()
    base = resources(model)
    mean = {}
    for mode in MODES:
        red = []
        for seed in range(3):
            for _, record in complexity_steps(model, mode, seed=seed):
                if record["step"] == 6:
                    break
            red.append([1 - record[r] / base[r] for r in MODES])
        mean[mode] = dict(zip(MODES, np.mean(red, axis=0)))
    assert mean["params"]["params"] > max(mean["macs"]["params"], mean["memory"]["params"])
    assert mean["memory"]["memory"] > max(mean["params"]["memory"], mean["macs"]["memory"])
    assert mean["macs"]["macs"] > mean["params"]["macs"]
    # each mode's own complexity falls the most within its own model
    for mode in ("params", "macs"):
        assert mean[mode][mode] == max(mean[mode].values())


def test_impossible_targets_are_value_errors():
    model = lenet5()
    for bad in (1.0, 1.5, 0.0, -0.2):
        with pytest.raises(ValueError, match=r"target=.*must be in \(0, 1\)"):
            plan_complexity_pruning(model, "params", target=bad)
    most = 1 - resources(minimal_model(model))["memory"] / resources(model)["memory"]
    with pytest.raises(ValueError, match=f"most that can be removed is {most:.4f}"):
        plan_complexity_pruning(model, "memory", target=0.9)
    with pytest.raises(ValueError, match="target_params=50 cannot be reached.*100 parameters"):
        plan_complexity_pruning(model, target_params=50)
    with pytest.raises(ValueError, match="target_macs=-5 must be a positive"):
        plan_complexity_pruning(model, "macs", target_macs=-5)
    with pytest.raises(ValueError, match="give a target"):
        plan_complexity_pruning(model, "macs")
    with pytest.raises(ValueError, match="mode=.*not a complexity mode"):
        plan_complexity_pruning(model, "energy", target=0.5)


def test_ignored_layers_limit_what_is_reachable():
    model = lenet5()
    free = 1 - resources(minimal_model(model))["params"] / resources(model)["params"]
    kept = minimal_model(model, ignored_layers=["fc1"])
    assert kept.get_layer("fc1").units == 120
    fixed = 1 - resources(kept)["params"] / resources(model)["params"]
    assert fixed < free
    with pytest.raises(ValueError, match="cannot be reached"):
        plan_complexity_pruning(model, "params", target=(fixed + free) / 2,
                                ignored_layers=["fc1"])


def test_plan_reinitialises_the_weights():
    model = lenet5()
    fresh, steps = plan_complexity_pruning(model, "params", target=0.3, seed=0)
    sliced, _ = plan_complexity_pruning(model, "params", target=0.3, seed=0, reinit=False)
    assert fresh.get_config() == sliced.get_config()
    # the sliced conv1 kernel is a part of the original; the fresh one is not
    k0 = model.get_layer("conv1").get_weights()[0]
    ks = sliced.get_layer("conv1").get_weights()[0]
    kf = fresh.get_layer("conv1").get_weights()[0]
    assert all(any(np.array_equal(ks[..., j], k0[..., i]) for i in range(k0.shape[-1]))
               for j in range(ks.shape[-1]))
    assert not any(np.array_equal(kf[..., j], k0[..., i])
                   for i in range(k0.shape[-1]) for j in range(kf.shape[-1]))


def _data(n=192, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.random((n, 28, 28, 1)).astype("float32") * 0.3
    x[np.arange(n), y, y, 0] += 2.0  # a learnable signal
    return x, y


def _compiled_lenet():
    model = lenet5()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_prune_memory_mode_end_to_end():
    x, y = _data()
    model = _compiled_lenet()
    before = [w.copy() for w in model.get_weights()]
    result = kprune.prune(model, "complexity", mode="memory", target=0.5,
                          train_data=(x[:160], y[:160]), val_data=(x[160:], y[160:]),
                          epochs=2, batch_size=32, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    final = result.final
    assert [e["round"] for e in result.history] == [0, 1]
    assert final["reduction"]["memory"] >= 0.5
    assert result.target == {"memory_reduction": 0.5}
    p = profile(result.model)
    assert (p.params, p.macs, p.peak_activation_bytes) == (
        final["params"], final["macs"], final["memory"])
    assert 0.0 <= final["val_accuracy"] <= 1.0
    assert final["train_time_s"] > 0 and len(final["losses"]) == 2
    assert final["losses"][1] < final["losses"][0]  # it was trained
    summary = result.summary()
    assert "method='complexity'" in summary and "memory_reduction" in summary
    assert result.model.get_layer("conv1").filters == final["widths"]["conv1"] < 6


def test_prune_reduction_dict_targets_and_budgets():
    x, y = _data(96)
    model = _compiled_lenet()
    kw = dict(train_data=(x[:64], y[:64]), val_data=(x[64:], y[64:]), epochs=1)
    r = kprune.prune(model, "complexity", target={"macs_reduction": 0.3}, **kw)
    assert r.final["mode"] == "macs" and r.final["reduction"]["macs"] >= 0.3
    r = kprune.prune(model, "complexity", mode="memory", target={"params_reduction": 0.2},
                     target_memory_bytes=20000, **kw)
    assert r.final["mode"] == "memory"
    assert r.final["params"] <= 0.8 * 61706 and r.final["memory"] <= 20000
    assert r.target == {"target_params": 0.8 * 61706, "target_memory_bytes": 20000}
    with pytest.raises(ValueError):
        kprune.prune(model, "complexity", mode="params", target=1.0, **kw)
    with pytest.raises(ValueError, match="most that can be removed"):
        kprune.prune(model, "complexity", mode="memory", target=0.95, **kw)


def test_prune_removing_everything_names_the_fraction():
    model = lenet5()
    model.compile("adam", "sparse_categorical_crossentropy")
    data = (np.zeros((8, 28, 28, 1), "float32"), np.zeros(8, "int64"))
    with pytest.raises(ValueError, match=r"target=1.0 \(the fraction of complexity "
                       "to remove\\).*impossible"):
        kprune.prune(model, "complexity", mode="params", target=1.0, train_data=data)
