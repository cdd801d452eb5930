"""Channel surgery: rebuild a model with fewer channels.

The new model is rebuilt from the original's serialized config, with each
changed layer's config edited (filters, units, groups, target shapes), and the
surviving slices of every weight copied in. The result is an ordinary Keras
model: same layer classes, names and nesting; nothing registered.
"""

from typing import Dict, Optional, Sequence

import keras
import numpy as np

from kprune.compat.keras_private import functional_inputs, history_operation, model_classes
from kprune.core.class_restore import restore_classes
from kprune.core.dependency import Analysis, analyze
from kprune.core.graph import functional_of, is_model
from kprune.core.handlers.base import LayerKeeps, zeroed_in_reference
from kprune.core.handlers.keras_hub import loadable_class, loadable_configs


def remove_channels(model, removal: Dict[str, Sequence[int]],
                    analysis: Optional[Analysis] = None,
                    keep_classes: bool = True) -> keras.Model:
    """Returns a new model without the given output channels.

    Args:
        model: a Keras 3 Functional or Sequential model (left unchanged);
            a tf_keras model gives a tf_keras model back (`analysis` is then
            recomputed).
        removal: {layer name: output-channel indices to remove}. Every layer of
            the named layer's dependency group loses the same channels.
            Layers of nested models may be named 'submodel/layer' or by a
            unique bare name.
        analysis: a precomputed `kprune.core.dependency.analyze(model)` to reuse.
        keep_classes: give back the class of a Functional subclass (a
            keras-hub Backbone) or of a composite layer where its constructor
            arguments can express the new widths (`kprune.core.class_restore`);
            False returns the plain graph of plain layers always.

    Returns:
        A new `keras.Model` with the channels physically removed; compiled
        like the original (fresh optimizer) when the original was compiled.
        A Functional subclass comes back as its own class when its arguments
        express the pruned widths (e.g. every FFN cut alike), else as a
        plain `keras.Model` over the rewritten graph (composite layers kept
        as their class where they can be, else inlined as nested models);
        `kprune.core.inlined_reasons(pruned)` says why a class was not kept.

    Raises:
        ValueError: unknown or non-prunable layer, index out of range, or a
            removal that takes every channel of a layer.

    Example:
        >>> small = kprune.remove_channels(model, {"conv1": [0, 3, 5]})
        >>> small.get_layer("conv1").filters
        29
    """
    from kprune.compat.tf_keras_bridge import is_tf_keras, keras3_of, to_tf_keras
    if is_tf_keras(model):  # tf_keras in, tf_keras out (pruned in Keras 3)
        return to_tf_keras(remove_channels(keras3_of(model), removal))
    analysis = analysis or analyze(model)
    removed = analysis.resolve_removal(removal)
    return rebuild(analysis, removed, keep_classes=keep_classes)


def masked_reference(model, removal: Dict[str, Sequence[int]],
                     analysis: Optional[Analysis] = None) -> keras.Model:
    """The original architecture with the removed channels' contribution to
    every consumer zeroed (their input weights in Conv/Dense layers set to 0).

    Its outputs equal those of `remove_channels(model, removal)` up to float
    rounding, for every group marked `exact`: the test of surgery.

    Example:
        >>> ref = kprune.masked_reference(model, {"conv1": [0]})
        >>> np.allclose(ref(x), kprune.remove_channels(model, {"conv1": [0]})(x))
        True
    """
    from kprune.compat.tf_keras_bridge import is_tf_keras, keras3_of, to_tf_keras
    if is_tf_keras(model):
        return to_tf_keras(masked_reference(keras3_of(model), removal))
    analysis = analysis or analyze(model)
    removed = analysis.resolve_removal(removal)
    return rebuild(analysis, removed, mask_only=True)


def _layer_keeps(analysis: Analysis, removed: set):
    """layer id -> (handler, `LayerKeeps`); also the kept channels of the
    model inputs (``'tensors'``) and ``'model_inputs'``."""
    graph = analysis.graph
    result = {"tensors": {}, "model_inputs": graph.model_inputs}
    for tids in graph.model_inputs.values():
        for t in tids:
            result["tensors"][t] = analysis.keep_indices(t, removed)
    for call in graph.calls:
        if id(call.layer) in result:
            continue
        handler = analysis.handlers[id(call.layer)]
        names = analysis.internal_names(call.layer)
        lk = LayerKeeps(
            [analysis.keep_indices(t, removed) for t in call.inputs],
            [analysis.keep_indices(t, removed) for t in call.outputs],
            {k: analysis.keep_units(call.layer, k, removed) for k in names},
            [graph.tensors[t].channels for t in call.inputs],
            [graph.tensors[t].channels for t in call.outputs],
            {k: len(analysis.internal_layout(call.layer, k)) for k in names},
            getattr(call.layer, "depth_multiplier", 1) or 1,
            getattr(handler, "input_slots", lambda c: {})(call))
        result[id(call.layer)] = (handler, lk)
    return result


def _operations(model):
    if isinstance(model, keras.Sequential):
        return list(model.layers)
    return list(getattr(model, "_operations", model.layers))


def _edit_config(entry_config, model, keeps, changed, input_widths=None):
    """Edits a (nested) model config in place. `input_widths` gives the new
    channel count of each input of a nested model."""
    by_name = {op.name: op for op in _operations(model)}
    if input_widths is not None:
        fn = functional_of(model)
        names = [history_operation(kt).name for kt in functional_inputs(fn)]
        for entry in entry_config["layers"]:
            if entry.get("class_name") != "InputLayer":
                continue
            name = entry["config"].get("name")
            if name in names:
                shape = list(entry["config"]["batch_shape"])
                shape[-1] = input_widths[names.index(name)]
                entry["config"]["batch_shape"] = tuple(shape)
    for entry in entry_config["layers"]:
        name = entry.get("name") or entry["config"].get("name")
        op = by_name.get(name)
        if op is None:  # InputLayer entries of Sequential configs
            continue
        if is_model(op):
            widths = [len(keeps["tensors"][t])
                      for t in keeps["model_inputs"][id(op)]]
            _edit_config(entry["config"], op, keeps, changed, widths)
            entry.pop("build_config", None)
            continue
        cls = loadable_class(op)
        if cls is not None:  # a registered subclass whose config loads back
            entry.update(module=cls.__module__, class_name=cls.__name__,
                         registered_name=keras.saving.get_registered_name(cls))
        if id(op) in changed:
            handler, lk = keeps[id(op)]
            rewrite = getattr(handler, "rewrite_config", None)
            if rewrite is not None:
                rewrite(entry["config"], op, lk)
            else:
                handler.update_config(entry["config"], op, lk.in_keep, lk.out_keep)
        if entry.get("class_name") != "InputLayer":
            entry.pop("build_config", None)


def _take(value, roles, keeps):
    for axis, role in enumerate(roles):
        if role is None:
            continue
        idx = keeps.index(role)
        if idx is not None:
            value = np.take(value, idx, axis=axis)
    return value


def _zero(value, roles, keeps):
    value = np.array(value, copy=True)
    for axis, role in enumerate(roles):
        if role is None or not zeroed_in_reference(role):
            continue
        idx = keeps.index(role)
        if idx is not None:
            mask = np.ones(value.shape[axis], dtype=bool)
            mask[idx] = False
            sl = [slice(None)] * value.ndim
            sl[axis] = mask
            value[tuple(sl)] = 0
    return value


def rebuild(analysis: Analysis, removed: set, mask_only: bool = False,
            keep_classes: bool = True) -> keras.Model:
    """Rebuilds the analysed model without the `removed` component roots
    (or, with mask_only, at full width with their contributions zeroed).
    Without mask_only and with keep_classes, classes whose arguments express
    the new widths are given back (`kprune.core.class_restore`)."""
    model = analysis.model
    keeps = _layer_keeps(analysis, removed)
    if mask_only:  # nested models keep their input widths too
        keeps["tensors"] = {t: np.arange(analysis.graph.tensors[t].channels)
                            for t in keeps["tensors"]}
    changed = set()
    if not mask_only:
        for key, value in keeps.items():
            if isinstance(key, int) and value[1].changed:
                changed.add(key)
    with loadable_configs(model):
        serialized = keras.saving.serialize_keras_object(model)
    _edit_config(serialized["config"], model, keeps, changed)
    serialized.pop("build_config", None)
    compiled = serialized.pop("compile_config", None)
    with keras.saving.custom_object_scope(model_classes(model)):
        # The config comes from the live model, not from a file: a Lambda's
        # code is the user's own, so safe mode (meant for untrusted files)
        # would only refuse it.
        new_model = keras.saving.deserialize_keras_object(serialized, safe_mode=False)
    _copy_weights(analysis, new_model, keeps, changed, mask_only)
    if keep_classes and not mask_only:
        new_model = restore_classes(getattr(analysis, "source", model), analysis, new_model)
    if compiled:  # Keras gives {} for a model that was never compiled
        _compile_like(new_model, compiled, model)
    return new_model


def _compile_like(new_model, compile_config, model):
    """Compiles with a fresh optimizer of the original's config. Unlike
    `compile_from_config`, this does not build the optimizer's slot
    variables now; they are built on the first training step."""
    try:
        with keras.saving.custom_object_scope(model_classes(model)):
            kwargs = keras.saving.deserialize_keras_object(compile_config)
        new_model.compile(**kwargs)
    except Exception as e:  # noqa: BLE001 - custom losses that do not load
        import warnings

        warnings.warn(
            f"the pruned model could not be compiled like the original ({e}); "
            "it is returned uncompiled: call compile() on it")


def _find(model, path):
    layer = model
    for part in path.split("/"):
        layer = layer.get_layer(part)
    return layer


def _copy_weights(analysis, new_model, keeps, changed, mask_only):
    graph = analysis.graph
    for layer in graph.leaf_layers():
        if not isinstance(layer, keras.layers.Layer) or not layer.weights:
            continue
        path = graph.layer_paths[id(layer)]
        new_layer = _find(new_model, path)
        old = layer.get_weights()
        handler, lk = keeps[id(layer)]
        if mask_only:
            if not handler.mixes_channels:
                new_layer.set_weights(old)
                continue
        elif id(layer) not in changed:
            new_layer.set_weights(old)
            continue
        roles = handler.weight_roles(layer, lk.n_in, lk.n_out)
        values = []
        for i, (w, value) in enumerate(zip(layer.weights, old)):
            r = roles.get(i, roles.get(w.name))
            if r is not None and len(r) != value.ndim:
                raise RuntimeError(
                    f"handler {handler.describe()} gave {len(r)} axis roles "
                    f"for weight '{w.name}' of '{path}', of shape {value.shape}")
            if r is None:
                values.append(value)
            elif mask_only:
                values.append(_zero(value, r, lk))
            else:
                values.append(_take(value, r, lk))
        if not mask_only:
            adjust = getattr(handler, "adjust_weights", None)
            if adjust is not None:
                values = adjust(layer, values, lk)
        try:
            new_layer.set_weights(values)
        except ValueError as e:
            raise RuntimeError(
                f"rebuilding layer '{path}' ({type(layer).__name__}): the "
                f"sliced weights do not fit ({e}); its handler "
                f"{handler.describe()} does not describe it correctly") from e
