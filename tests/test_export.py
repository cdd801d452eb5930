"""kprune.export: TFLite conversion of pruned models and C source for TFLM."""

import os
import shutil
import subprocess

import keras
import numpy as np
import pytest

import kprune
from kprune.bench import litert, tflm
from kprune.export import ConversionError, tflite_ops, to_c_source, to_micro, to_tflite
from kprune.testing import random_removal

pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite_micro")


def _tiny_model():
    inp = keras.Input((12, 12, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(12, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(16, activation="relu", name="fc1")(x)
    out = keras.layers.Dense(5, name="logits")(x)
    model = keras.Model(inp, out, name="tiny")
    rng = np.random.default_rng(0)
    model.get_layer("bn1").set_weights([rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.1, 8),
                                        rng.normal(0, 0.1, 8), rng.uniform(0.5, 1.5, 8)])
    return model


@pytest.fixture(scope="module")
def pruned():
    keras.utils.set_random_seed(0)
    model = _tiny_model()
    small = kprune.remove_channels(model, random_removal(model, 0.4, seed=1))
    assert small.get_layer("conv1").filters < 8 and small.get_layer("fc1").units < 16
    return small


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return (rng.random((100, 12, 12, 1), dtype=np.float32),
            rng.random((40, 12, 12, 1), dtype=np.float32))


@pytest.fixture(scope="module")
def int8_flat(pruned, data):
    return to_tflite(pruned, "int8", representative_data=data[0])


# Max |TFLite - Keras| relative to max |Keras output|, per quantization mode.
TOLERANCE = {None: 1e-5, "dynamic": 0.02, "float16": 0.005, "int8": 0.05}


@pytest.mark.parametrize("quantization", [None, "dynamic", "float16", "int8"])
def test_each_mode_matches_keras(pruned, data, quantization):
    calibration, x = data
    flat = to_tflite(pruned, quantization, representative_data=calibration)
    ref = pruned.predict(x, verbose=0)
    out = litert.predict(flat, x)[0]
    assert out.shape == ref.shape
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    assert rel <= TOLERANCE[quantization], (quantization, rel)
    assert np.mean(out.argmax(-1) == ref.argmax(-1)) >= 0.9


def test_fixed_batch_one_graph_has_no_shape_ops(pruned):
    flat = to_tflite(pruned)
    interp = litert.make_interpreter(flat)
    (inp,) = interp.get_input_details()
    assert list(inp["shape"]) == [1, 12, 12, 1]
    assert list(inp["shape_signature"]) == [1, 12, 12, 1]
    ops = tflite_ops(flat)
    assert not {"SHAPE", "PACK", "STRIDED_SLICE"} & set(ops), ops


def test_dynamic_batch_when_asked(pruned):
    interp = litert.make_interpreter(to_tflite(pruned, batch_size=None))
    assert interp.get_input_details()[0]["shape_signature"][0] == -1


def test_int8_is_full_integer(int8_flat):
    interp = litert.make_interpreter(int8_flat)
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    dtypes = {np.dtype(d["dtype"]) for d in interp.get_tensor_details()}
    assert dtypes <= {np.dtype(np.int8), np.dtype(np.int32)}, dtypes


def test_modes_shrink_the_flatbuffer(pruned, data):
    sizes = {q: len(to_tflite(pruned, q, representative_data=data[0]))
             for q in (None, "float16", "int8")}
    assert sizes["int8"] < sizes["float16"] < sizes[None]


def test_pruned_flatbuffer_is_smaller_than_original(pruned):
    assert len(to_tflite(pruned)) < len(to_tflite(_tiny_model()))


def test_path_writes_the_same_bytes(pruned, tmp_path):
    path = tmp_path / "sub" / "m.tflite"
    flat = to_tflite(pruned, path=str(path))
    assert path.read_bytes() == flat
    assert kprune.export.load_tflite(str(path)) == flat


def test_int8_without_representative_data(pruned):
    with pytest.raises(ValueError, match="representative_data"):
        to_tflite(pruned, "int8")


@pytest.mark.parametrize("shape", [(10, 12, 12, 3), (10, 12, 12), (12, 12, 1)])
def test_int8_representative_data_wrong_shape(pruned, shape):
    with pytest.raises(ValueError, match=r"does not match input .*\(N,\) \+ \(12, 12, 1\)"):
        to_tflite(pruned, "int8", representative_data=np.zeros(shape, np.float32))


def test_unknown_quantization(pruned):
    with pytest.raises(ValueError, match="int4"):
        to_tflite(pruned, "int4")


def test_unknown_input_dimensions():
    inp = keras.Input((None, None, 3))
    model = keras.Model(inp, keras.layers.Conv2D(2, 3)(inp))
    with pytest.raises(ValueError, match="unknown dimension.*input_shape="):
        to_tflite(model)


def _variable_length_text_model():
    L = keras.layers
    ids = keras.Input((None,), dtype="int32", name="ids")
    x = L.Embedding(30, 8, name="tok")(ids)
    x = L.Conv1D(6, 3, padding="same", activation="relu", name="conv")(x)
    x = L.GRU(5, name="gru")(x)
    return keras.Model(ids, L.Dense(3, name="out")(x))


def test_variable_length_model_converts_at_a_given_length():
    from kprune.export import with_input_shape

    model = _variable_length_text_model()
    x = np.random.default_rng(0).integers(0, 30, (16, 10)).astype("int32")
    fixed = with_input_shape(model, {"ids": (10,)})
    assert tuple(fixed.inputs[0].shape) == (None, 10)
    assert fixed.get_layer("gru").input.shape[1] == 10  # every layer sees the length
    np.testing.assert_allclose(fixed.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert with_input_shape(fixed, (12,)) is fixed  # nothing unknown: unchanged
    flat = to_tflite(model, input_shape=(10,))
    assert "WHILE" not in tflite_ops(flat)  # the GRU unrolled over its 10 steps
    np.testing.assert_allclose(litert.predict(flat, x)[0], model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)
    flat8 = to_tflite(model, "int8", representative_data=x, input_shape=(10,))
    assert np.mean(litert.predict(flat8, x)[0].argmax(-1)
                   == model.predict(x, verbose=0).argmax(-1)) >= 0.8
    with pytest.raises(ValueError, match="does not fit model input 'ids'"):
        with_input_shape(model, (10, 2))
    with pytest.raises(ValueError, match=r"names \['tokens'\].*not model inputs"):
        to_tflite(model, input_shape={"tokens": (10,)})


class _Erfinv(keras.layers.Layer):
    def call(self, x):
        import tensorflow as tf
        return tf.math.erfinv(x)


def test_unconvertible_op_names_layer_and_op():
    inp = keras.Input((6,))
    x = keras.layers.Dense(4, activation="tanh", name="dense_in")(inp)
    x = _Erfinv(name="inverse_erf")(x)
    model = keras.Model(inp, keras.layers.Dense(2, name="head")(x))
    with pytest.raises(ConversionError, match=r"layer 'inverse_erf' \(_Erfinv\).*'Erfinv'"):
        to_tflite(model)


# ---------------------------------------------------------------- C source

def test_c_source_compiles_links_and_holds_the_model(int8_flat, tmp_path):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not installed")
    files = to_c_source(int8_flat, "tiny_model", str(tmp_path / "fw"))
    assert os.path.basename(files.cc) == "tiny_model.cc" and os.path.exists(files.h)
    assert files.model_bytes == len(int8_flat)
    # The recommended arena works in TFLite-Micro; the measured minimum is below it.
    assert files.arena_bytes % 16 == 0
    assert tflm.min_arena_bytes(int8_flat) < files.arena_bytes
    tflm.interpreter(int8_flat, arena_size=files.arena_bytes)
    main = tmp_path / "main.cc"
    main.write_text(
        '#include "tiny_model.h"\n#include <cstdint>\n#include <cstdio>\n'
        "int main() {\n"
        "  unsigned long sum = 0;\n"
        "  for (unsigned int i = 0; i < g_tiny_model_data_len; ++i)\n"
        "    sum = (sum * 31 + g_tiny_model_data[i]) % 1000000007UL;\n"
        '  std::printf("%u %lu %u %u %d\\n", g_tiny_model_data_len, sum,\n'
        "              tiny_model::kModelSize, tiny_model::kTensorArenaSize,\n"
        "              (int)(reinterpret_cast<std::uintptr_t>(g_tiny_model_data) % 16));\n"
        "}\n")
    obj = tmp_path / "model.o"
    subprocess.run([gxx, "-std=c++11", "-Wall", "-Wextra", "-Werror", "-c", files.cc,
                    "-o", str(obj)], check=True)
    exe = tmp_path / "main"
    subprocess.run([gxx, "-std=c++11", f"-I{os.path.dirname(files.h)}", str(main), str(obj),
                    "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()
    checksum = 0
    for b in int8_flat:
        checksum = (checksum * 31 + b) % 1000000007
    assert out == [str(len(int8_flat)), str(checksum), str(len(int8_flat)),
                   str(files.arena_bytes), "0"]


def test_c_source_path_with_extension(int8_flat, tmp_path):
    files = to_c_source(int8_flat, "m", str(tmp_path / "model_data.cc"), arena_size=4096)
    assert files.cc.endswith("model_data.cc") and files.h.endswith("model_data.h")
    assert '#include "model_data.h"' in open(files.cc).read()
    assert "kTensorArenaSize = 4096;" in open(files.h).read()


@pytest.mark.parametrize("name", ["2fast", "my-model", "class", ""])
def test_c_source_rejects_bad_names(int8_flat, tmp_path, name):
    with pytest.raises(ValueError, match="identifier"):
        to_c_source(int8_flat, name, str(tmp_path))


def test_c_source_rejects_non_tflite(tmp_path):
    with pytest.raises(ValueError, match="TFL3"):
        to_c_source(b"not a model at all", "m", str(tmp_path))


def test_to_micro_from_keras_file(pruned, data, tmp_path):
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    files = to_micro(str(path), "pruned", str(tmp_path / "out"), representative_data=data[0])
    flat = (tmp_path / "out" / "pruned.tflite").read_bytes()
    assert files.model_bytes == len(flat)
    assert litert.make_interpreter(flat).get_input_details()[0]["dtype"] == np.int8
    assert f"kTensorArenaSize = {files.arena_bytes};" in open(files.h).read()


def test_subclassed_model_needs_wrapping():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    model = Sub()
    model(np.zeros((1, 8), np.float32))
    with pytest.raises(ValueError, match=r"keras.Model\(inp, model\(inp\)\)"):
        to_tflite(model)


def test_multi_input_int8():
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    x = keras.layers.Concatenate()([keras.layers.Dense(5, name="da")(a), b])
    model = keras.Model([a, b], keras.layers.Dense(2, name="out")(x))
    rng = np.random.default_rng(0)
    xa, xb = rng.random((60, 4), dtype=np.float32), rng.random((60, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="2 inputs"):
        to_tflite(model, "int8", representative_data=xa)
    flat = to_tflite(model, "int8", representative_data=[xa, xb])
    interp = litert.make_interpreter(flat)
    assert sorted(tuple(d["shape"]) for d in interp.get_input_details()) == [(1, 3), (1, 4)]
    ref = model.predict([xa[:20], xb[:20]], verbose=0)
    for x in ({"a": xa[:20], "b": xb[:20]}, [xa[:20], xb[:20]]):
        out = litert.predict(flat, x)[0]
        assert np.abs(out - ref).max() <= TOLERANCE["int8"] * np.abs(ref).max()


def _weight_scales(flat):
    """{op type: [number of scales of each weight tensor]} of a flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=flat)
    details = {t["index"]: t for t in it.get_tensor_details()}
    out = {}
    for op in it._get_ops_details():
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            weight = details[op["inputs"][1]]
            assert weight["dtype"] == np.int8
            out.setdefault(op["op_name"], []).append(
                len(weight["quantization_parameters"]["scales"]))
    return out


def _depthwise_model():
    inp = keras.Input((8, 8, 4))
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(inp)
    x = keras.layers.Conv2D(6, 1, name="pw")(x)
    out = keras.layers.Dense(3, name="fc")(keras.layers.Flatten()(x))
    return keras.Model(inp, out)


def test_per_tensor_int8_has_one_scale_per_weight_tensor(data):
    keras.utils.set_random_seed(3)
    model = _depthwise_model()
    x = np.random.default_rng(1).random((64, 8, 8, 4), dtype=np.float32)
    per_channel = to_tflite(model, "int8", representative_data=x)
    per_tensor = to_tflite(model, "int8", representative_data=x, per_channel=False)
    assert _weight_scales(per_channel) == {"DEPTHWISE_CONV_2D": [4], "CONV_2D": [6],
                                           "FULLY_CONNECTED": [3]}
    assert _weight_scales(per_tensor) == {"DEPTHWISE_CONV_2D": [1], "CONV_2D": [1],
                                          "FULLY_CONNECTED": [1]}
    ref = model.predict(x, verbose=0)
    for flat in (per_channel, per_tensor):  # both still follow the float model
        out = litert.predict(flat, x)[0]
        assert np.abs(out - ref).max() / np.abs(ref).max() < TOLERANCE["int8"]


@pytest.mark.parametrize("kwargs, match", [
    ({"quantization": "int8", "per_channel": "no"}, r"per_channel must be True .* got 'no'"),
    ({"quantization": None, "per_channel": False}, r"per_channel=False applies to "
                                                   r"quantization='int8' only"),
    ({"quantization": "dynamic", "per_channel": False}, r"quantization='dynamic'")])
def test_per_channel_bad_values(pruned, data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        to_tflite(pruned, representative_data=data[0], **kwargs)
