"""Surgery on random graphs as rich as real models (`tests/random_graphs.py`):
every pruned graph equals its masked reference, leaves the input model
unchanged and survives a `.keras` round trip. 200 graphs each run, the
same 200 for a given generator (derandomized, as Hypothesis does under CI
anyway); `benchmarks/fuzz_surgery.py` explores thousands of new ones."""

import keras
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.random_graphs import random_model
from tests.surgery_fuzz import FAILURES, check_model


#: seeds whose graph hits a bug outside kprune, each tested on its own below
#: (a strict xfail, so a fix upstream shows up)
KNOWN_OUTSIDE_BUGS = {11608275}


@settings(max_examples=200, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31 - 1))
def test_random_graphs_prune_exactly(seed):
    assume(seed not in KNOWN_OUTSIDE_BUGS)
    result = check_model(random_model(seed), seed)
    keras.backend.clear_session(free_memory=False)
    assert result["status"] not in FAILURES, (
        f"seed {seed} ({result['status']}; reproduce with "
        f"tests.surgery_fuzz.check_seed({seed})): {result.get('error')}\n"
        f"removal: {result.get('removal')}\n{result.get('traceback')}")


@pytest.mark.xfail(strict=True, reason=(
    "Keras 3.15 bug: MultiHeadAttention 'mha5' of this graph (3 heads, key_dim 2, "
    "value_dim 1, attention_axes (1, 2), 3x3 positions) does not compute its own "
    "math: its per-head outputs differ from a numpy evaluation of the same weights "
    "by 0.37, while the 2-head layer kprune cuts from it matches numpy to 5e-7, "
    "so pruned and masked reference disagree"))
def test_known_mismatch_seed_11608275():
    result = check_model(random_model(11608275), 11608275)
    keras.backend.clear_session(free_memory=False)
    assert result["status"] not in FAILURES, result.get("error")


def _features(model):
    """Layer classes and notable constructs of one random model."""
    found = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        name = type(layer).__name__
        found.add(name)
        activation = getattr(getattr(layer, "activation", None), "__name__", None)
        if activation in ("softmax", "log_softmax", "sparsemax"):
            found.add(f"{name}:{activation}")
        if isinstance(layer, keras.Model) and len(layer._inbound_nodes) > 1:
            found.add("model called twice")
        elif not isinstance(layer, keras.Model) and len(layer._inbound_nodes) > 1:
            found.add("shared layer")
        if getattr(layer, "depth_multiplier", 1) > 1:
            found.add(f"{name}:multiplier")
        if getattr(layer, "center", True) is False:
            found.add(f"{name}:no center")
        for arg in ("strides", "dilation_rate"):
            if max(getattr(layer, arg, (1,)) or (1,)) > 1:
                found.add(f"{name}:{arg}")
    if len(model.inputs) > 1:
        found.add("several inputs")
    if len(model.outputs) > 1:
        found.add("several outputs")
    return found


def test_generator_covers_real_model_features():
    found = set()
    for seed in range(200):
        found |= _features(random_model(seed))
        keras.backend.clear_session(free_memory=False)
    wanted = {
        "Conv1D", "Conv2D", "Conv1DTranspose", "Conv2DTranspose",
        "DepthwiseConv2D:multiplier", "SeparableConv2D", "Dense",
        "BatchNormalization:no center", "LayerNormalization:no center",
        "GroupNormalization:no center", "UnitNormalization", "Softmax",
        "PReLU", "Add", "Subtract", "Multiply", "Average", "Maximum",
        "Minimum", "Concatenate", "Functional", "Sequential",
        "model called twice", "shared layer", "several inputs",
        "several outputs", "Conv2D:strides", "Conv1D:dilation_rate",
        "Activation", "Conv2D:softmax", "Permute", "MultiHeadAttention",
        "Bidirectional", "Embedding", "EinsumDense",
    }
    assert found & {"LSTM", "GRU", "SimpleRNN"} == {"LSTM", "GRU", "SimpleRNN"}
    assert wanted <= found, f"never generated: {sorted(wanted - found)}"
