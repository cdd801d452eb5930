"""kprune.bench.op_profile: per-op time of a real converted model on LiteRT
and TFLite-Micro, from one-op flatbuffers cut out of the model."""

import keras
import numpy as np
import pytest

import kprune
from kprune.bench import op_profile
from kprune.export import to_tflite
from kprune.runtime import flatbuffer
from kprune.runtime.op_profile import split_ops

pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite_micro")


def _model():
    inp = keras.Input((12, 12, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = keras.layers.Flatten(name="flat")(x)
    out = keras.layers.Dense(4, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="net")


@pytest.fixture(scope="module")
def flat():
    keras.utils.set_random_seed(0)
    model = _model()
    x = np.random.default_rng(0).random((64, 12, 12, 1)).astype("float32")
    return model, x, to_tflite(model, "int8", representative_data=x)


def _interp(data):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data, experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=
                     __import__("ai_edge_litert.interpreter", fromlist=["x"])
                     .OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    return it


def test_one_op_models_reproduce_every_intermediate_tensor(flat):
    # Each cut-out op, fed the whole model's input tensors of that op,
    # produces exactly the whole model's output tensor of that op.
    _, x, data = flat
    graph = flatbuffer.parse(data)
    ops, empty = split_ops(data)
    assert [o["op"] for o in ops] == [op.name for op in graph.operators]
    whole = _interp(data)
    d = whole.get_input_details()[0]
    scale, zero = d["quantization"]
    whole.set_tensor(d["index"], np.clip(np.round(x[:1] / scale + zero), -128, 127)
                     .astype(d["dtype"]))
    whole.invoke()
    for o, op in zip(ops, graph.operators):
        part = _interp(o["flatbuffer"])
        ins = [t for t in op.inputs if t >= 0 and not graph.tensors[t].constant]
        for detail, t in zip(part.get_input_details(), ins):
            part.set_tensor(detail["index"], whole.get_tensor(t))
        part.invoke()
        got = part.get_tensor(part.get_output_details()[0]["index"])
        np.testing.assert_array_equal(got, whole.get_tensor(op.outputs[0]), err_msg=o["op"])
    # the empty model passes its input through and runs no operator
    e = _interp(empty)
    assert flatbuffer.parse(empty).operators == []
    assert e.get_input_details()[0]["shape"].tolist() == [1, 12, 12, 1]


def test_macs_match_kprune_profile(flat):
    model, _, data = flat
    ops, _ = split_ops(data)
    by_name = {row.name: row.macs for row in kprune.profile(model).layers}
    macs = {o["op"]: o["macs"] for o in ops}
    assert macs["CONV_2D"] == by_name["conv1"]
    assert macs["DEPTHWISE_CONV_2D"] == by_name["dw"]
    assert macs["FULLY_CONNECTED"] == by_name["probs"]
    assert macs["MAX_POOL_2D"] == 0


@pytest.mark.parametrize("runtime,runs", [("litert", 60), ("tflm", 3)])
def test_profile_on_both_runtimes(flat, runtime, runs):
    _, _, data = flat
    prof = op_profile(data, runtime, runs=runs)
    assert [o.op for o in prof.ops] == [op.name for op in flatbuffer.parse(data).operators]
    assert all(o.ms >= 0 and o.raw_ms > 0 for o in prof.ops)
    assert prof.whole_ms > 0 and prof.floor_ms > 0
    assert prof.kernels in (("xnnpack", "builtin") if runtime == "litert"
                            else ("tflm-reference",))
    # the heaviest op on the reference kernels is a MAC op, not the floor
    d = prof.to_dict()
    assert set(d["by_op"]) == {o.op for o in prof.ops}
    assert abs(d["ops_ms"] + d["floor_ms"] + d["unexplained_ms"] - d["whole_ms"]) < 1e-9
    assert "per-invoke floor" in prof.format()


def test_bad_inputs():
    with pytest.raises(ValueError, match="runtime='gpu'"):
        op_profile(b"\x00\x00\x00\x00TFL3", "gpu")
    with pytest.raises(ValueError, match="TFLite flatbuffer bytes"):
        op_profile(keras.Model, "litert")
    with pytest.raises(ValueError, match="runs=0 must be a positive integer"):
        op_profile(b"\x00\x00\x00\x00TFL3", "litert", runs=0)
