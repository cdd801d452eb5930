"""keras.applications architectures: prune about 30 percent of every
prunable group, check exact equivalence against the masked reference, save
and load as .keras with nothing registered, convert to TFLite and compare."""

import os

import keras
import numpy as np
import pytest

import kprune
from kprune.testing import (assert_surgery_equivalent, calibrate_batchnorm,
                            random_removal)

# name -> input size (the smallest each architecture accepts, kept small).
ARCHITECTURES = {
    "ResNet50": 32, "ResNet50V2": 32, "MobileNet": 32, "MobileNetV2": 32,
    "MobileNetV3Small": 32, "EfficientNetB0": 32, "EfficientNetV2B0": 32,
    "DenseNet121": 32, "VGG16": 32, "Xception": 71, "InceptionV3": 75,
    "NASNetMobile": 32, "ConvNeXtTiny": 32,
}


def _build(name, size):
    kwargs = dict(weights=None, input_shape=(size, size, 3), classes=10,
                  classifier_activation=None)
    model = getattr(keras.applications, name)(**kwargs)
    # Random initialisation leaves deep nets nearly constant at the output;
    # give every channel a say so that a wrong slice cannot hide.
    rng = np.random.default_rng(1)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if type(layer).__name__ == "LayerScale":
            layer.set_weights([rng.uniform(0.5, 1.0, w.shape).astype("float32")
                               for w in layer.get_weights()])
    calibrate_batchnorm(model, _inputs(size, seed=7, batch=8))
    return model


def _inputs(size, seed=0, batch=2):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, size=(batch, size, size, 3)).astype("float32")


def _litert_outputs(tflite_bytes, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite_bytes)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    results = []
    for sample in x:
        interpreter.set_tensor(inp["index"], sample[None])
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0])
    return np.stack(results)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_application(name, tmp_path):
    size = ARCHITECTURES[name]
    model = _build(name, size)
    analysis = kprune.analyze(model)
    groups = analysis.groups
    assert groups, f"{name}: no prunable groups found"
    x = _inputs(size)

    # 1. Exact groups: the pruned model is the masked original.
    removal = random_removal(model, fraction=0.3, seed=0, exact_only=True,
                             analysis=analysis)
    assert removal, f"{name}: no exact groups"
    pruned = assert_surgery_equivalent(model, removal, inputs=x, rtol=2e-4)

    # 2. Every group (LayerNorm-coupled ones too) at 30 percent.
    full = random_removal(model, fraction=0.3, seed=0, analysis=analysis)
    if full != removal:
        pruned = kprune.remove_channels(model, full, analysis=analysis)
    ratio = pruned.count_params() / model.count_params()
    assert ratio < 0.85, f"{name}: only {1 - ratio:.0%} of parameters removed"

    # 3. Plain .keras: saves and loads with nothing registered.
    path = os.path.join(tmp_path, f"{name}.keras")
    pruned.save(path)
    loaded = keras.models.load_model(path, compile=False)
    want = np.asarray(pruned(x, training=False))
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), want,
                               rtol=1e-5, atol=1e-5)

    # 4. TFLite: converts and computes the same.
    from kprune.export import to_tflite

    got = _litert_outputs(to_tflite(pruned), x)
    scale = max(1.0, float(np.abs(want).max()))
    assert float(np.abs(got - want).max()) <= 1e-3 * scale
