"""Quantization-aware training through tfmot: Keras 3 model -> QAT -> full-int8
flatbuffer on LiteRT and TFLite-Micro; Keras 3 still works afterwards."""

import os

import keras
import numpy as np
import pytest
from keras import layers

import kprune
from kprune import compat, export, zoo
from kprune.runtime.tflm import tflm_arena_bytes


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    x = rng.rand(192, 28, 28, 1).astype("float32")
    y = (x[:, :14].mean(axis=(1, 2, 3)) * 10).astype("int64") % 10  # learnable labels
    return x, y


def _compiled_lenet():
    m = zoo.lenet5()
    m.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m


def _tensor_types(flat):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=flat)
    it.allocate_tensors()
    return it, {np.dtype(t["dtype"]).name for t in it.get_tensor_details()}


def test_keras3_model_to_qat_int8_litert_and_micro(data, tmp_path):
    x, y = data
    model = _compiled_lenet()
    env_before = os.environ.get("TF_USE_LEGACY_KERAS")
    qat = export.quantize_aware(model)
    assert os.environ.get("TF_USE_LEGACY_KERAS") == env_before
    assert compat.is_tf_keras(qat) and export.is_quantize_aware(qat)
    config = qat.get_compile_config()
    assert config["loss"] == "sparse_categorical_crossentropy"
    assert config["metrics"] == ["accuracy"]
    assert qat.optimizer is not model.optimizer
    qat.fit(x, y, epochs=1, batch_size=32, verbose=0)

    flat = export.to_tflite(qat, "int8")  # QAT ranges: no calibration needed
    it, types = _tensor_types(flat)
    assert types <= {"int8", "int32"}, types  # full integer: no float tensor left
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    scale, zero = inp["quantization"]
    agree = 0
    ref = qat.predict(x[:32], verbose=0).argmax(-1)
    for i in range(32):
        q = np.clip(np.round(x[i:i + 1] / scale + zero), -128, 127).astype(np.int8)
        it.set_tensor(inp["index"], q)
        it.invoke()
        agree += int(it.get_tensor(out["index"]).argmax() == ref[i])
    assert agree >= 28, agree  # int8 LiteRT follows the QAT model

    files = export.to_micro(qat, "qat_lenet", str(tmp_path))
    assert files.arena_bytes > 0 and os.path.isfile(files.cc)
    assert tflm_arena_bytes(flat) > 0  # runs on TFLite-Micro

    # The Keras 3 side of kprune still works in this process after tfmot ran.
    model.fit(x[:64], y[:64], epochs=1, verbose=0)
    small = kprune.remove_channels(model, {"conv1": [0, 1]})
    assert isinstance(small, keras.Model) and small.get_layer("conv1").filters == 4
    assert export.is_tflite(export.to_tflite(small, "int8", representative_data=x[:16]))


def test_pruned_then_qat_from_tf_keras(data):
    x, y = data
    m2 = compat.to_tf_keras(_compiled_lenet())
    small = kprune.remove_channels(m2, {"conv2": list(range(8))})
    qat = export.quantize_aware(small)
    assert qat.get_layer("quant_conv2").layer.filters == 8
    qat.fit(x[:64], y[:64], epochs=1, verbose=0)
    flat = export.to_tflite(qat, "int8", representative_data=x[:32])
    assert export.is_tflite(flat)


def test_unsupported_layers_are_named_or_kept_float(data):
    inp = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 3, name="a")(inp)
    b = layers.Conv2D(4, 3, name="b")(inp)
    z = layers.Multiply(name="gate")([a, b])
    out = layers.Dense(2, name="o")(layers.Flatten(name="f")(z))
    model = keras.Model(inp, out)
    with pytest.raises(export.QATError, match=r"'gate' \(Multiply\).*unsupported='float'"):
        export.quantize_aware(model)
    qat = export.quantize_aware(model, unsupported="float")
    assert export.qat.kept_float(qat) == ["quant_gate"]
    xs = np.random.RandomState(1).rand(16, 8, 8, 3).astype("float32")
    with pytest.raises(ValueError, match="representative_data"):
        export.to_tflite(qat, "int8")  # a float layer needs calibration
    flat = export.to_tflite(qat, "int8", representative_data=xs)
    assert _tensor_types(flat)[1] <= {"int8", "int32"}


def test_quantize_aware_errors():
    with pytest.raises(ValueError, match="unsupported must be"):
        export.quantize_aware(zoo.lenet5(), unsupported="skip")
    with pytest.raises(TypeError, match="Keras 3 or tf_keras model"):
        export.quantize_aware("lenet.keras")
    qat = export.quantize_aware(zoo.lenet5())
    with pytest.raises(export.QATError, match="already quantization-aware"):
        export.quantize_aware(qat)
    inner = keras.Sequential([keras.Input((4,)), layers.Dense(3, name="d")], name="inner")
    inp = keras.Input((4,))
    with pytest.raises(export.QATError, match=r"nested model\(s\) \['inner'\]"):
        export.quantize_aware(keras.Model(inp, inner(inp)))


def test_cli_export_and_bench_with_qat_epochs(data, tmp_path):
    from kprune.cli.main import main
    x, y = data
    model = _compiled_lenet()
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:40], y_test=y[:40])
    assert main(["kprune", "export", "--model", str(tmp_path / "m.keras"), "--data",
                 str(tmp_path / "d.npz"), "--out", str(tmp_path / "fw"), "--qat-epochs", "1",
                 "--qat_samples", "96"]) == 0
    assert (tmp_path / "fw" / "m.cc").is_file()
    assert main(["kprune", "export", "--model", str(tmp_path / "m.keras"), "--out",
                 str(tmp_path / "x"), "--format", "tflite", "--quantization", "float16",
                 "--qat_epochs", "1"]) == 2


def test_qat_model_back_to_float_keras3(data):
    x, _ = data
    qat = export.quantize_aware(zoo.lenet5())
    back = compat.from_tf_keras(qat)
    assert isinstance(back, keras.Model) and not export.is_quantize_aware(back)
    assert [l.name for l in back.layers[1:]] == [l.name for l in zoo.lenet5().layers[1:]]
    assert kprune.profile(qat).params == back.count_params()
    kernel = [w for w in qat.get_layer("quant_conv1").weights if "kernel" in w.name][0]
    np.testing.assert_array_equal(back.get_layer("conv1").get_weights()[0], kernel.numpy())


def test_cli_bench_with_qat_epochs(data, tmp_path, monkeypatch, capsys):
    import json

    import kprune.bench
    from kprune.cli.main import main
    x, y = data
    model = _compiled_lenet()
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:40], y_test=y[:40])
    measured = []
    real_measure = kprune.bench.measure

    def spy(model, **kwargs):  # the real measurement, recording what it was given
        measured.append(model)
        return real_measure(model, **kwargs)

    monkeypatch.setattr(kprune.bench, "measure", spy)
    flags = ["--quantizations", "float32,int8", "--latency_modes", "int8", "--runs", "2",
             "--warmup", "1", "--rounds", "1", "--nomin_arena", "--eval_samples", "40"]
    assert main(["kprune", "bench", "--model", str(tmp_path / "m.keras"), "--data",
                 str(tmp_path / "d.npz"), "--out", str(tmp_path / "b"), "--qat-epochs", "1",
                 "--qat_samples", "96"] + flags) == 0
    (qat,) = measured
    assert compat.is_tf_keras(qat) and export.is_quantize_aware(qat)  # QAT model measured
    record = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert "int8" in json.dumps(record)
    capsys.readouterr()

    # --qat_epochs needs training data and a Keras model, not a flatbuffer.
    assert main(["kprune", "bench", "--model", str(tmp_path / "m.keras"),
                 "--qat_epochs", "1"] + flags) == 2
    assert "needs training data" in capsys.readouterr().err
    (tmp_path / "m.tflite").write_bytes(export.to_tflite(model))
    assert main(["kprune", "bench", "--model", str(tmp_path / "m.tflite"), "--data",
                 str(tmp_path / "d.npz"), "--qat_epochs", "1"] + flags) == 2
    assert "already a .tflite flatbuffer" in capsys.readouterr().err
    assert len(measured) == 1


def test_per_tensor_qat_gives_per_tensor_int8(data):
    from tests.test_export import _weight_scales
    x, y = data
    model = _compiled_lenet()
    per_tensor = export.quantize_aware(model, per_channel=False)
    assert not export.qat.per_channel_weights(per_tensor)
    per_tensor.fit(x[:64], y[:64], epochs=1, verbose=0)
    flat = export.to_tflite(per_tensor, "int8", per_channel=False)
    assert _weight_scales(flat) == {"CONV_2D": [1, 1], "FULLY_CONNECTED": [1, 1, 1]}
    assert _tensor_types(flat)[1] <= {"int8", "int32"}
    per_channel = export.quantize_aware(model)  # the default: one scale per conv filter
    assert export.qat.per_channel_weights(per_channel)
    assert _weight_scales(export.to_tflite(per_channel, "int8"))["CONV_2D"] == [6, 16]
    with pytest.raises(ValueError, match=r"per-channel weight scales.*"
                                         r"quantize_aware\(model, per_channel=False\)"):
        export.to_tflite(per_channel, "int8", per_channel=False)
    with pytest.raises(ValueError, match=r"per_channel must be True .* got 0"):
        export.quantize_aware(model, per_channel=0)
