"""The sequence models of kprune.zoo used by the quality benchmark
(benchmarks/quality.py vit_fmnist / gru_fmnist): patch tokens, the small ViT
and the row-reading GRU / LSTM build, expose every group the issue asks for
(heads, head dims, MLP widths, model width; recurrent units), and prune
exactly against the masked reference."""

import numpy as np
import pytest

import kprune
from kprune import zoo
from kprune.core.profile import layer_widths
from kprune.testing import assert_surgery_equivalent, random_removal


def test_patch_tokens_layout():
    rng = np.random.default_rng(0)
    images = rng.random((3, 28, 28, 1)).astype("float32")
    tokens = zoo.patch_tokens(images, patch=7)
    assert tokens.shape == (3, 16, 49 + 16) and tokens.dtype == np.float32
    for gy in range(4):
        for gx in range(4):
            want = images[:, gy * 7:(gy + 1) * 7, gx * 7:(gx + 1) * 7, 0].reshape(3, 49)
            np.testing.assert_array_equal(tokens[:, gy * 4 + gx, :49], want)
    np.testing.assert_array_equal(tokens[1, :, 49:], np.eye(16))
    # (N, H, W) images read as one channel; 4x4 patches of 28x28 give 49 tokens
    assert zoo.patch_tokens(images[..., 0], patch=4).shape == (3, 49, 16 + 49)


def test_patch_tokens_refuses_a_patch_that_does_not_divide_the_image():
    with pytest.raises(ValueError, match=r"patch=5 must divide the image size 28x28"):
        zoo.patch_tokens(np.zeros((1, 28, 28)), patch=5)


def test_gru_rows_refuses_an_unknown_cell():
    with pytest.raises(ValueError, match=r"cell='rnn' must be 'gru' or 'lstm'"):
        zoo.gru_rows(cell="rnn")


def test_vit_tiny_groups_and_exact_pruning():
    model = zoo.vit_tiny(dim=16, num_heads=4, key_dim=4, mlp_dim=24)
    groups = {g.name: g for g in kprune.dependency_groups(model)}
    assert set(groups) == {"embed", "b0_mha:heads", "b0_mha:key_dim", "b0_mha:value_dim",
                           "b0_mlp1", "b1_mha:heads", "b1_mha:key_dim", "b1_mha:value_dim",
                           "b1_mlp1"}
    # the model width (residual stream) is one group through every block
    assert {"b0_ln1", "b1_mlp2", "ln_f", "predictions"} <= set(groups["embed"].layers)
    assert groups["b0_mha:heads"].channels == 4 and groups["embed"].channels == 16
    # LayerNorm normalizes over the width: that group is pruned, not exactly
    assert not groups["embed"].exact and groups["b1_mha:heads"].exact
    removal = random_removal(model, 0.25, seed=0, exact_only=True)
    pruned = assert_surgery_equivalent(model, removal)
    assert pruned.get_layer("b1_mha").num_heads == 3
    assert pruned.get_layer("b0_mlp1").units == 18
    wide = kprune.remove_channels(model, {"embed": [0, 3, 9]})
    assert wide.get_layer("embed").units == 13 and wide.get_layer("ln_f").gamma.shape == (13,)


@pytest.mark.parametrize("cell,gates", [("gru", 3), ("lstm", 4)])
def test_gru_rows_groups_and_exact_pruning(cell, gates):
    model = zoo.gru_rows(units=8, cell=cell)
    groups = {g.name: g for g in kprune.dependency_groups(model)}
    assert set(groups) == {"rnn1", "rnn2"} and groups["rnn1"].channels == 8
    pruned = assert_surgery_equivalent(model, {"rnn1": [0, 5], "rnn2": [1, 2, 7]})
    r2 = pruned.get_layer("rnn2")
    assert r2.units == 5 and r2.get_weights()[0].shape == (6, gates * 5)


def test_layer_widths_name_attention_heads_and_head_dims():
    model = zoo.vit_tiny(dim=16, num_heads=4, key_dim=4, mlp_dim=24)
    pruned = kprune.remove_channels(model, {"b1_mha:heads": [2], "b0_mha:key_dim": [0, 1],
                                            "b0_mha:value_dim": [3]})
    widths = layer_widths(pruned)
    assert (widths["b0_mha:heads"], widths["b0_mha:key_dim"], widths["b0_mha:value_dim"]) \
        == (4, 2, 3)
    assert widths["b1_mha:heads"] == 3 and widths["b0_mlp1"] == 24
    assert "b0_mha" not in widths
