"""A copy of a model with its unknown input dimensions fixed.

A text or audio model is usually built on ``keras.Input((None,))`` so that
it takes any sequence length; LiteRT and TFLite-Micro need every dimension
fixed (the int8 calibration and the micro runtime have no dynamic shapes,
and a recurrent layer unrolls only over a known number of steps).
`with_input_shape` rebuilds the model from its config on fixed-shape inputs
and copies the weights, so that every layer sees the fixed shape (not just
the outer call).

Example:
    >>> fixed = kprune.export.with_input_shape(text_model, (128,))
    >>> fixed.inputs[0].shape
    (None, 128)
    >>> flat = kprune.export.to_tflite(text_model, "int8", x[:200], input_shape=(128,))
"""

import keras

from kprune.compat.keras_private import functional_inputs, model_classes


def _input_layers(config):
    """The serialized InputLayer entries of a Functional model's config."""
    return [entry for entry in config["config"].get("layers", [])
            if entry.get("class_name") == "InputLayer"]


def with_input_shape(model, input_shape):
    """`model` rebuilt with its unknown input dimensions fixed to
    `input_shape` (batch axis excluded): a tuple for every input of its rank,
    a list of tuples in input order, or a dict by input name. Weights are
    copied; the batch axis stays open. A model whose inputs are fully known
    is returned as it is.

    Raises:
        ValueError: a shape that does not fit an input (the message names
            it), or an input of unknown size left without a shape.

    Example:
        >>> fixed = with_input_shape(model, {"token_ids": (64,), "padding_mask": (64,)})
    """
    from kprune.core.composite import functional_view
    from kprune.core.graph import functional_of, input_shapes_in_order

    view = functional_view(model)
    fn = functional_of(view)
    kts = list(functional_inputs(fn))
    if not any(None in tuple(kt.shape)[1:] for kt in kts):
        return model
    shapes = input_shapes_in_order(input_shape, kts)
    if fn is not view or type(view).__name__ == "Sequential":
        fn = keras.Model(fn.inputs, fn.outputs, name=view.name)
    serialized = keras.saving.serialize_keras_object(fn)
    serialized.pop("compile_config", None)
    entries = {e["config"]["name"]: e for e in _input_layers(serialized)}
    for kt, shape in zip(kts, shapes):
        name = kt._keras_history[0].name
        old = tuple(kt.shape)
        shape = tuple(old[1:] if shape is None else shape)
        if len(shape) != len(old) - 1 or any(
                d is not None and d != int(s) for d, s in zip(old[1:], shape)):
            raise ValueError(
                f"input_shape {shape} does not fit model input '{name}' of shape "
                f"{old[1:]} (batch axis excluded): give one entry per axis, equal to "
                "the model's where it is known")
        entries[name]["config"]["batch_shape"] = [None] + [int(s) for s in shape]
    with keras.saving.custom_object_scope(model_classes(model)):
        fixed = keras.saving.deserialize_keras_object(serialized, safe_mode=False)
    fixed.set_weights(fn.get_weights())
    return fixed
