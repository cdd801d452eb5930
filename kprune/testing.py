"""Checks for surgery: is a pruned model exactly the masked original?

Useful when you write a channel handler for your own layer: prune a model
that uses it and compare against the masked reference.

Example:
    >>> removal = kprune.testing.random_removal(model, fraction=0.3, seed=0)
    >>> kprune.testing.assert_surgery_equivalent(model, removal)
"""

from typing import Dict, List, Sequence

import numpy as np

from kprune.compat.backend import to_numpy
from kprune.compat.keras_private import all_layers

from kprune.core.dependency import analyze
from kprune.core.surgery import rebuild


class VacuousComparison(AssertionError):
    """Masking changed nothing at the outputs: the check would prove nothing."""


def random_removal(model, fraction: float = 0.3, seed: int = 0,
                   exact_only: bool = False, analysis=None,
                   ignored_layers: Sequence[str] = ()) -> Dict[str, List[int]]:
    """About `fraction` of the units of every prunable group, chosen at
    random, as a `remove_channels` argument. Each group keeps at least one
    unit, and so does every layer output: a layer that holds only some of a
    group's units (one input of a Concatenate added to a wider tensor) gets
    one of its units back when all of them were drawn."""
    analysis = analysis or analyze(model, ignored_layers)
    rng = np.random.default_rng(seed)
    chosen = {}
    unit_of_root = {}
    for group in analysis.groups:
        if exact_only and not group.exact:
            continue
        n = min(int(round(group.channels * fraction)), group.channels - 1)
        if n <= 0:
            continue
        units = rng.choice(group.channels, size=n, replace=False)
        chosen[group.index] = set(units.tolist())
        for unit in units.tolist():
            unit_of_root[int(group._roots[unit])] = (group.index, unit)
    gone = np.zeros(len(analysis.roots), dtype=bool)
    gone[list(unit_of_root)] = True
    for call in analysis.graph.calls:
        for tid in call.outputs:
            rl = analysis.roots[analysis.layouts[tid]]
            if len(rl) and gone[rl].all():
                root = int(rl[0])
                gone[root] = False
                g, unit = unit_of_root[root]
                chosen[g].discard(unit)
    removal: Dict[str, List[int]] = {}
    for group in analysis.groups:
        units = sorted(chosen.get(group.index, ()))
        if not units:
            continue
        for layer, idx in group.to_layer_indices(units).items():
            removal.setdefault(layer, []).extend(idx)
    return removal


def calibrate_batchnorm(model, x) -> None:
    """Sets every BatchNormalization's moving statistics to those of batch
    `x` (one forward pass in training mode with momentum 0), so that a
    randomly initialised deep model carries signal to its outputs.

    Example:
        >>> kprune.testing.calibrate_batchnorm(model, x_batch)
    """
    import keras

    bns = [l for l in all_layers(model) if isinstance(l, keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    try:
        model(x, training=True)
    finally:
        for bn, m in zip(bns, saved):
            bn.momentum = m


def _as_list(y):  # backend tensors (TensorFlow, JAX, PyTorch) as numpy
    if isinstance(y, dict):
        return [to_numpy(y[k]) for k in sorted(y)]
    if isinstance(y, (list, tuple)):
        return [to_numpy(v) for v in y]
    return [to_numpy(y)]


def assert_surgery_equivalent(model, removal: Dict[str, Sequence[int]],
                              inputs=None, rtol: float = 1e-4,
                              atol: float = 1e-5, seed: int = 0,
                              pruned=None, require_change: bool = True,
                              analysis=None):
    """Asserts that `remove_channels(model, removal)` computes what the masked
    reference computes, and returns the pruned model.

    Args:
        inputs: model inputs (random normal of the model's input shape, batch
            2, when None).
        rtol/atol: tolerance relative to the largest output magnitude.
        pruned: an already pruned model to check instead of rebuilding.
        require_change: also assert that masking changed the original's
            outputs, so the comparison is not vacuous.
        analysis: `analyze(model, ...)` to use (e.g. with `gqa_units`).
    """
    analysis = analysis if analysis is not None else analyze(model)
    removed = analysis.resolve_removal(removal)
    if pruned is None:
        pruned = rebuild(analysis, removed)
    reference = rebuild(analysis, removed, mask_only=True)
    if inputs is None:
        rng = np.random.default_rng(seed)
        inputs = [rng.normal(size=(2,) + tuple(analysis.graph.tensors[t].shape))
                  .astype("float32") for t in analysis.graph.inputs]
        inputs = inputs[0] if len(inputs) == 1 else inputs
    got = _as_list(pruned(inputs, training=False))
    want = _as_list(reference(inputs, training=False))
    orig = _as_list(model(inputs, training=False))
    changed = False
    for g, w, o in zip(got, want, orig):
        if not np.issubdtype(w.dtype, np.floating):
            # masks and ids (a backbone's attention mask): equal, not close
            if g.shape != w.shape or not np.array_equal(g, w):
                raise AssertionError("pruned model's non-float output differs "
                                     "from the masked reference's")
            continue
        scale = max(1.0, float(np.max(np.abs(w))))
        err = float(np.max(np.abs(g - w))) if g.size else 0.0
        if err > atol + rtol * scale:
            raise AssertionError(
                f"pruned model differs from the masked reference by {err:.3g} "
                f"(output scale {scale:.3g})")
        if o.size and float(np.max(np.abs(o - w))) > 10 * (atol + rtol * scale):
            changed = True
    if require_change and removed and not changed:
        raise VacuousComparison(
            "masking the removed channels did not change the original's "
            "outputs: the comparison proves nothing (use other inputs or "
            "non-saturating outputs)")
    return pruned



