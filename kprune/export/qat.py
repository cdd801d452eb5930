"""Quantization-aware training (QAT) with tensorflow-model-optimization.

tfmot only accepts tf_keras (Keras 2) models, so a Keras 3 model goes
through `kprune.compat.to_tf_keras` first. The returned model is tfmot's
quantize-wrapped tf_keras model (fake-quant on weights and activations),
compiled like the original with a fresh optimizer: fine-tune it for an
epoch or two, then `kprune.export.to_tflite(qat_model, "int8")` gives a
full-integer flatbuffer (int8 input and output) for LiteRT and TFLite-Micro.

Process safety: tfmot is imported only when `quantize_aware` runs, never by
``import kprune``. Importing it sets ``TF_USE_LEGACY_KERAS=1`` in the process
environment; kprune restores the previous value right after the import (tfmot
has already bound tf_keras by then), so the Keras 3 side of kprune and child
processes started later behave as before.

Example:
    >>> qat = kprune.export.quantize_aware(pruned)        # Keras 3 or tf_keras model
    >>> qat.fit(x_train, y_train, epochs=2, validation_split=0.1)
    >>> flat = kprune.export.to_tflite(qat, "int8", representative_data=x_train[:200])
"""

import os
from typing import List

__all__ = ["QATError", "is_quantize_aware", "quantize_aware"]

#: What `quantize_aware(unsupported=...)` accepts.
UNSUPPORTED_POLICIES = ("error", "float")


class QATError(ValueError):
    """The model cannot be made quantization-aware (the message names the layers)."""


def _tfmot():
    """Imports tfmot, leaving TF_USE_LEGACY_KERAS as it was before."""
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError as err:
        raise ImportError(
            "quantization-aware training needs tensorflow-model-optimization: "
            "pip install 'kprune[qat]' (or 'tensorflow-model-optimization>=0.8.1,<0.9')") from err
    finally:
        if before is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = before
    return tfmot


def is_quantize_aware(model) -> bool:
    """True for a tfmot quantize-wrapped model (as `quantize_aware` returns)."""
    stack = [model]
    while stack:
        m = stack.pop()
        for layer in getattr(m, "layers", []):
            if type(layer).__name__ in ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer"):
                return True
            if getattr(layer, "layers", None):
                stack.append(layer)
    return False


def per_channel_weights(model) -> bool:
    """True when a QAT model fake-quantizes some weights per output channel
    (`quantize_aware`'s default), False when every weight scale is per tensor
    (``quantize_aware(model, per_channel=False)``)."""
    return any(getattr(getattr(getattr(layer, "quantize_config", None), "weight_quantizer",
                               None), "per_axis", False)
               for layer in getattr(model, "layers", []))


def kept_float(model) -> List[str]:
    """Layers of a QAT model that `quantize_aware(unsupported='float')` kept in float."""
    return [l.name for l in getattr(model, "layers", [])
            if type(getattr(l, "quantize_config", None)).__name__ == "KeepFloatConfig"]


def _unsupported_layers(model, tfmot) -> List[str]:
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import \
        default_8bit_quantize_registry as registry_mod
    registry = registry_mod.Default8BitQuantizeRegistry()
    out = []
    for layer in model.layers:
        name = type(layer).__name__
        if name in ("InputLayer", "BatchNormalization") or registry.supports(layer):
            continue  # BatchNormalization is folded into the preceding conv
        out.append(layer)
    return out


def _no_op_config(tfmot):
    base = tfmot.quantization.keras.QuantizeConfig

    class KeepFloatConfig(base):
        """Leaves the layer in float during QAT (the converter calibrates it)."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    return KeepFloatConfig


def quantize_aware(model, unsupported: str = "error", per_channel: bool = True):
    """The tfmot quantization-aware (fake-quant) version of `model`, ready for `fit`.

    Args:
        model: a built Keras 3 or tf_keras Functional/Sequential model (e.g.
            `kprune.prune(...).model`). It is not modified. Nested models are
            not supported by tfmot: flatten them first.
        unsupported: what to do with layers tfmot's default 8-bit scheme
            cannot quantize (e.g. Multiply, PReLU, GroupNormalization, Keras
            operations): ``'error'`` (default) raises `QATError` naming them;
            ``'float'`` annotates them with a config that keeps them in float
            during QAT, and the int8 converter then calibrates them from
            ``representative_data`` like post-training quantization.
        per_channel: True (default) fake-quantizes Conv2D/DepthwiseConv2D
            weights with one scale per output channel, as TFLite's int8
            kernels do by default; False uses one scale per weight tensor
            (tfmot's ``Default8BitQuantizeScheme(disable_per_axis=True)``),
            for targets whose kernels are per-tensor only. Convert such a
            model with ``to_tflite(qat, "int8", per_channel=False)``.

    Returns:
        A tf_keras model of quantize-wrapped layers, compiled like `model`
        (loss, metrics, loss weights; a fresh optimizer of the same class and
        config). An uncompiled `model` gives an uncompiled result.

    Raises:
        TypeError: `model` is not a Keras model.
        ValueError: bad `unsupported` value.
        QATError: unsupported or nested layers (named in the message).
        kprune.compat.UnsupportedLayerError: a layer with no tf_keras
            equivalent.

    Example:
        >>> qat = kprune.export.quantize_aware(result.model)
        >>> qat.fit(x, y, epochs=1)
        >>> flat = kprune.export.to_tflite(qat, "int8", representative_data=x[:200])
        >>> qat_pt = kprune.export.quantize_aware(result.model, per_channel=False)
        >>> qat_pt.fit(x, y, epochs=1)
        >>> flat_pt = kprune.export.to_tflite(qat_pt, "int8", per_channel=False)
    """
    from kprune.compat import tf_keras_bridge as compat

    if unsupported not in UNSUPPORTED_POLICIES:
        raise ValueError(f"unsupported must be 'error' or 'float', got {unsupported!r}")
    if not isinstance(per_channel, bool):
        raise ValueError(f"per_channel must be True (one weight scale per output channel) or "
                         f"False (one per tensor), got {per_channel!r}")
    if compat.is_tf_keras(model):
        if is_quantize_aware(model):
            raise QATError(f"model '{model.name}' is already quantization-aware")
        source = model
    else:
        import keras
        if not isinstance(model, keras.Model):
            raise TypeError(f"quantize_aware expects a Keras 3 or tf_keras model, got "
                            f"{type(model).__name__}")
        source = compat.to_tf_keras(model, compile=False)
    tfmot = _tfmot()
    nested = [l.name for l in source.layers if hasattr(l, "layers")]
    if nested:
        raise QATError(
            f"model '{model.name}' contains nested model(s) {nested}: tfmot cannot quantize a "
            f"model inside a model; rebuild it as one flat functional model first")
    bad = _unsupported_layers(source, tfmot)
    quant = tfmot.quantization.keras
    if bad and unsupported == "error":
        names = ", ".join(f"'{l.name}' ({type(l).__name__})" for l in bad)
        raise QATError(
            f"tfmot's 8-bit QAT cannot quantize layer(s) {names} of model '{model.name}': "
            f"pass unsupported='float' to keep them in float during QAT (the int8 "
            f"converter then calibrates them from representative_data), or replace them")
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import \
        default_8bit_quantize_scheme
    scheme = default_8bit_quantize_scheme.Default8BitQuantizeScheme(
        disable_per_axis=not per_channel)
    try:
        if bad:
            keep = {l.name for l in bad}
            config_cls = _no_op_config(tfmot)
            import tf_keras

            def annotate(layer):
                if layer.name in keep:
                    return quant.quantize_annotate_layer(layer, quantize_config=config_cls())
                if type(layer).__name__ == "InputLayer":
                    return layer
                return quant.quantize_annotate_layer(layer)

            # The annotation wrappers hold the original layers: weights shared.
            annotated = tf_keras.models.clone_model(source, clone_function=annotate)
            with quant.quantize_scope({"KeepFloatConfig": config_cls}):
                qat = quant.quantize_apply(annotated, scheme)
        else:
            qat = quant.quantize_apply(quant.quantize_annotate_model(source), scheme)
    except (RuntimeError, ValueError) as err:
        raise QATError(f"tfmot could not make model '{model.name}' quantization-aware: "
                       f"{err}") from err
    compat.compile_like(qat, model)
    return qat
