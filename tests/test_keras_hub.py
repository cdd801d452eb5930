"""keras-hub backbones (tiny, random weights, nothing downloaded) prune
exactly and round-trip through `.keras`.

Every prunable group is cut by about 25%; the pruned model is checked
against the masked reference (`assert_surgery_equivalent`) and at least half
of each backbone's channels must be prunable.
"""

import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

import keras  # noqa: E402

import kprune  # noqa: E402

from kprune.core.dependency import analyze  # noqa: E402
from kprune.testing import (assert_surgery_equivalent, calibrate_batchnorm,  # noqa: E402
                            random_removal)
from tests.keras_hub_models import BUILDERS, sample_inputs  # noqa: E402

#: backbones that prune exactly today, with at least half their channels
#: prunable. The decoder LLMs trace past `ops.shape` (kprune/core/
#: shape_ops.py) and prune their FFN widths, attention heads and value head
#: dimensions; Gemma's attention reshapes by traced lengths, which become
#: Reshape layers. DeiT's encoder returns `ops.empty` placeholders and its
#: blocks `(x, None)`: both trace. Moonshine (speech) rotates its
#: attention's queries by a `rotary_embedding` argument.
EXACT = ["mobilenet", "resnet", "resnet_v2", "efficientnet", "cspnet",
         "densenet", "vgg", "xception", "bert", "distilbert", "roberta",
         "electra", "whisper", "vit", "deit", "gpt2", "llama", "qwen", "mistral",
         "gemma", "gemma3", "moonshine"]


def _prunable_fraction(analysis):
    prunable = sum(g.channels for g in analysis.groups)
    frozen = sum(g.channels for g in analysis.frozen_groups)
    return prunable / (prunable + frozen)


@pytest.mark.parametrize("name", EXACT)
def test_backbone_prunes_exactly_and_round_trips(name, tmp_path):
    model = BUILDERS[name]()
    x = sample_inputs(model)
    calibrate_batchnorm(model, x)
    analysis = analyze(model)
    fraction = _prunable_fraction(analysis)
    print(f"{name}: prunable fraction of channels {fraction:.2f}")
    assert fraction >= 0.5, [
        (g.name, g.frozen) for g in analysis.frozen_groups]
    removal = random_removal(model, fraction=0.25, seed=1, analysis=analysis)
    # every prunable group loses about a quarter of its units
    removed_roots = analysis.resolve_removal(removal)
    for group in analysis.groups:
        gone = sum(int(r) in removed_roots for r in group._roots)
        assert abs(gone - round(0.25 * group.channels)) <= 1, group
    # the plain graph (keeping classes is tested in test_class_restore.py:
    # random cuts cut head dimensions, which no backbone argument expresses)
    pruned = kprune.remove_channels(model, removal, analysis=analysis, keep_classes=False)
    assert_surgery_equivalent(model, removal, inputs=x, pruned=pruned)
    assert pruned.count_params() < model.count_params()
    assert type(pruned) is keras.Model or type(pruned).__name__ == "Functional"
    path = tmp_path / f"{name}.keras"
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(keras.tree.flatten(pruned(x)), keras.tree.flatten(loaded(x))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


def test_resnet_backbone_remove_channels_returns_a_working_model():
    """The issue's ResNetBackbone: `remove_channels` failed with KeyError
    'layers' (its config holds constructor arguments). Its stem width is an
    argument (`input_conv_filters`), so the class is kept; without
    `keep_classes` it is the plain graph."""
    model = BUILDERS["resnet"]()
    group = kprune.dependency_groups(model)[0]
    assert group.name == "conv1_conv"
    pruned = kprune.remove_channels(model, group.to_layer_indices([0, 1]))
    assert type(pruned) is type(model) and pruned.input_conv_filters == [14]
    assert pruned.count_params() < model.count_params()
    plain = kprune.remove_channels(model, group.to_layer_indices([0, 1]), keep_classes=False)
    assert not isinstance(plain, keras_hub.models.Backbone)
    assert plain.get_layer("conv1_conv").filters == 14


def test_bert_dependency_groups_do_not_crash():
    """The issue's BertBackbone crashed in dependency_groups (int(None) on
    its token-id inputs of unknown length)."""
    import kprune

    groups = kprune.dependency_groups(BUILDERS["bert"]())
    assert any("feedforward_intermediate_dense" in g.name for g in groups)


def test_gemma_attention_is_traced_and_prunes_key_value_groups(tmp_path):
    """Gemma's attention reshapes its queries into key/value groups by
    lengths read with ops.shape ((b, t, n, h) -> (b, t, k, n // k, h)) and
    back: the trace makes those Reshape layers, the heads follow them, and
    removing a key/value head removes its query heads, exactly; its value
    head dims are a group too (its rotary query / key dims stay)."""
    model = BUILDERS["gemma"]()
    x = sample_inputs(model)
    analysis = analyze(model)
    groups = {g.name: g for g in analysis.groups}
    frozen = {g.name: g.frozen for g in analysis.frozen_groups}
    heads = groups["decoder_block_0/attention/query:heads"]
    assert heads.channels == 2  # two key/value heads, each with two query heads
    assert groups["decoder_block_0/attention/value"].channels == 8
    assert "rotates pairs of head dimensions" in frozen["decoder_block_0/attention/query"]
    removal = {heads.name: [0], "decoder_block_1/attention/value": [1, 2, 5]}
    pruned = assert_surgery_equivalent(model, removal, inputs=x)
    # block 0's arguments express its heads: its class comes back
    block = pruned.get_layer("decoder_block_0")
    assert type(block).__name__ == "GemmaDecoderBlock"
    assert (block.num_query_heads, block.num_key_value_heads) == (2, 1)
    attention = block.attention
    shapes = {part: tuple(getattr(attention, f"{part}_dense").kernel.shape)
              for part in ("query", "key", "value", "output")}
    assert shapes == {"query": (2, 32, 8), "key": (1, 32, 8), "value": (1, 32, 8),
                      "output": (2, 8, 32)}
    # a value head dim apart from the query / key one: the plain graph
    value = pruned.get_layer("decoder_block_1").get_layer("attention").get_layer("value")
    assert tuple(value.kernel.shape) == (2, 32, 5)
    path = tmp_path / "gemma.keras"
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(pruned(x)),
                               rtol=1e-6, atol=1e-6)
    longer = sample_inputs(model, seq=11)  # the traced reshapes read the length
    np.testing.assert_allclose(np.asarray(loaded(longer)), np.asarray(pruned(longer)),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["llama", "qwen", "mistral"])
def test_grouped_query_attention_prunes_whole_key_value_groups(name, tmp_path):
    """Removing a key/value head removes the query heads that share it
    (num_query_heads / num_key_value_heads stays whole), exactly."""
    model = BUILDERS[name]()
    x = sample_inputs(model)
    analysis = analyze(model)
    heads = [g for g in analysis.groups if g.name.endswith(":heads")]
    assert len(heads) == 2, [g.name for g in analysis.groups]
    group = heads[0]
    assert group.channels == 2  # two key/value heads, each with two query heads
    removal = group.to_layer_indices([1])
    pruned = assert_surgery_equivalent(model, removal, inputs=x)
    prefix = group.name.rsplit("/", 1)[0]
    shapes = {part: tuple(pruned.get_layer(prefix.split("/")[0]).get_layer(
        prefix.split("/")[1]).get_layer(part).kernel.shape)
        for part in ("query", "key", "value", "attention_output")}
    assert shapes["query"][1] == 2 and shapes["key"][1] == 1 and shapes["value"][1] == 1
    assert shapes["attention_output"][0] == 2
    path = tmp_path / "gqa.keras"
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(pruned(x)),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_causal_lm_prunes_its_model_width_with_tied_logits(name, tmp_path):
    """A backbone's output is a model output, so its width stays; a causal
    LM ends in logits from the tied token embedding (reverse=True), so its
    model width (embedding, residual stream, norms, every projection on it)
    is one prunable group. The norms over it make it inexact; the exact
    groups are checked against the masked reference, the width by shapes,
    the tie and a .keras round trip."""
    import kprune

    backbone = BUILDERS[name]()
    task = {"gpt2": keras_hub.models.GPT2CausalLM,
            "llama": keras_hub.models.LlamaCausalLM}[name]
    lm = task(backbone=backbone, preprocessor=None)
    x = sample_inputs(backbone)
    analysis = analyze(lm)
    width = [g for g in analysis.groups if g.name.endswith("token_embedding:dim")]
    assert len(width) == 1 and width[0].channels == 32 and not width[0].exact
    assert_surgery_equivalent(lm, random_removal(lm, 0.25, seed=1, exact_only=True,
                                                 analysis=analysis), inputs=x)
    removal = random_removal(lm, 0.25, seed=2, analysis=analysis)
    assert len(removal[width[0].name]) == 8
    pruned = kprune.remove_channels(lm, removal, analysis=analysis)
    tokens = [l for l in pruned._flatten_layers() if l.name == "token_embedding"]
    assert len(tokens) == 1  # one layer for the embedding and the logits
    tokens, tied = tokens[0], backbone.token_embedding.tie_weights
    assert tokens.output_dim == 24 and tokens.tie_weights == tied
    assert [tuple(w.shape) for w in tokens.weights] == (
        [(100, 24)] if tied else [(100, 24), (24, 100)])
    logits = np.asarray(pruned(x))
    assert logits.shape == (2, 8, 100) and np.isfinite(logits).all()
    pruned.save(tmp_path / "lm.keras")
    loaded = keras.saving.load_model(tmp_path / "lm.keras")
    np.testing.assert_allclose(np.asarray(loaded(x)), logits, rtol=1e-6, atol=1e-6)


def test_moonshine_rotary_attention_prunes_heads_and_value_dims(tmp_path):
    """Moonshine's attention takes a `rotary_embedding` that keras-hub 0.32
    cannot call symbolically: kprune traces it, prunes heads and value
    dims exactly, freezes the key dims it rotates (the cross-attention's
    stay prunable) and the pruned model loads back and runs at another
    audio length."""
    model = BUILDERS["moonshine"]()
    x = sample_inputs(model)
    analysis = analyze(model)
    groups = {g.name: g for g in analysis.groups}
    frozen = {g.name: g.frozen for g in analysis.frozen_groups}
    enc = "encoder_block_0/self_attention_layer"
    block = model.get_layer("decoder_block_0")  # auto-named sub-layers
    dec_self, dec_cross, mlp = (f"decoder_block_0/{block.self_attention.name}",
                                f"decoder_block_0/{block.cross_attention.name}",
                                f"decoder_block_0/{block.ff.name}/dense_1")
    assert "rotary embedding" in frozen[f"{enc}:key_dim"]
    assert "rotary embedding" in frozen[f"{dec_self}:key_dim"]
    assert groups[f"{dec_cross}:key_dim"].channels == 8
    assert groups[mlp].channels == 64  # SwiGLU: one unit is a value and its gate
    removal = {f"{enc}:heads": [0], f"{dec_self}:value_dim": [1, 6],
               f"{dec_cross}:key_dim": [2], mlp: [0, 63]}
    pruned = assert_surgery_equivalent(model, removal, inputs=x)
    attention = pruned.get_layer("encoder_block_0").get_layer("self_attention_layer")
    assert attention.num_heads == 1 and type(attention).__name__ == (
        "LoadableMoonshineMultiHeadAttention")
    assert pruned.get_layer("decoder_block_0").get_layer(
        block.ff.name).get_layer("dense_1").units == 124
    pruned.save(tmp_path / "moonshine.keras")
    loaded = keras.saving.load_model(tmp_path / "moonshine.keras")
    shorter = dict(x, encoder_input_values=x["encoder_input_values"][:, :2047],
                   encoder_padding_mask=x["encoder_padding_mask"][:, :2047])
    for inputs in (x, shorter):
        want, got = pruned(inputs), loaded(inputs)
        for key in want:
            np.testing.assert_allclose(np.asarray(got[key]), np.asarray(want[key]),
                                       rtol=1e-6, atol=1e-6)
    assert tuple(loaded(shorter)["encoder_sequence_output"].shape) == (2, 4, 16)


def _kernels(model, name):
    return [tuple(l.kernel.shape) for l in model._flatten_layers()
            if l.name == name and hasattr(l, "kernel")]


@pytest.mark.parametrize("name", ["llama", "qwen", "mistral", "gemma"])
def test_grouped_query_attention_prunes_query_heads_inside_groups(name, tmp_path):
    """gqa_units='query_heads': unit j is the j-th query head of every
    key/value group (Llama / Qwen / Mistral repeat their key/value heads,
    Gemma regroups its queries by reshape); removing it leaves each group
    one query head fewer and every key/value head, exactly against the
    masked reference, and the model loads back and runs at other lengths."""
    model = BUILDERS[name]()
    x = sample_inputs(model)
    analysis = analyze(model, gqa_units="query_heads")
    heads = [g for g in analysis.groups if g.name.endswith(":heads")]
    assert len(heads) == 2 and heads[0].channels == 2, [g.name for g in heads]
    kv = [g for g in analysis.frozen_groups if g.name.endswith(("key:heads", "value:heads"))]
    assert len(kv) == 4  # key / value heads of both layers stay
    pruned = assert_surgery_equivalent(model, {heads[0].name: [1]}, inputs=x,
                                       analysis=analysis)
    before, after = _kernels(model, "query"), _kernels(pruned, "query")
    assert np.prod(after[0]) * 2 == np.prod(before[0]) and after[1] == before[1]
    assert _kernels(pruned, "key") == _kernels(model, "key")
    assert _kernels(pruned, "value") == _kernels(model, "value")
    path = tmp_path / "gqa_query_heads.keras"
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    for inputs in (x, sample_inputs(model, seq=11)):
        np.testing.assert_allclose(np.asarray(loaded(inputs)), np.asarray(pruned(inputs)),
                                   rtol=1e-6, atol=1e-6)


def test_gqa_units_is_checked():
    with pytest.raises(ValueError, match="gqa_units='heads'.*key_value_heads"):
        analyze(BUILDERS["llama"](), gqa_units="heads")


def _llama_classifier():
    backbone = BUILDERS["llama"]()
    inputs = {k: keras.Input((None,), dtype="int32", name=k)
              for k in ("token_ids", "padding_mask")}
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(backbone(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="cls")(pooled))
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(1, 50, (32, 8)).astype("int32"),
         "padding_mask": np.ones((32, 8), "int32")}
    return model, x, (x["token_ids"][:, 0] % 2).astype("int64")


def test_prune_takes_gqa_units():
    """kprune.prune(..., gqa_units='query_heads') prunes query heads inside
    the key/value groups of a classifier over a Llama backbone; the default
    removes whole groups; a bad value is refused before training."""
    from kprune.prune import prune
    model, x, y = _llama_classifier()
    kw = dict(train_data=(x, y), rounds=1, rate=0.5, epochs=1, target="none", seed=0,
              calibration_samples=16, batch_size=16, ignored_layers=[])
    query = prune(model, "ilp", gqa_units="query_heads", **kw).model
    assert all(k[1] == 2 for k in _kernels(query, "query"))  # 4 -> 2 query heads
    assert all(k[1] == 2 for k in _kernels(query, "key"))    # both kv heads kept
    whole = prune(model, "ilp", **kw).model
    assert all(k[1] == 1 for k in _kernels(whole, "key"))    # one kv group of 2 gone
    assert all(k[1] == 2 for k in _kernels(whole, "query"))
    with pytest.raises(ValueError, match="gqa_units must be 'key_value_heads'.*got 'heads'"):
        prune(model, "ilp", gqa_units="heads", **kw)


def test_gemma3_sliding_window_mask_is_traced():
    """Gemma 3's sliding-window attention builds its band mask from traced
    lengths: the trace makes it a SlidingWindowMask layer, and the traced
    graph computes what the backbone does at lengths past the window (4)."""
    from kprune.core.composite import functional_view

    model = BUILDERS["gemma3"]()
    view = functional_view(model)
    masks = [l for l in view._flatten_layers() if type(l).__name__ == "SlidingWindowMask"]
    assert [m.window for m in masks] == [4, 4]
    for seq in (3, 13):
        x = sample_inputs(model, seq=seq)
        np.testing.assert_allclose(np.asarray(view(x)), np.asarray(model(x)),
                                   rtol=1e-5, atol=1e-5)


def test_gemma_heads_cut_alike_keep_the_backbone_class():
    """Gemma's head_dim is an argument, so one key/value group cut in every
    layer is `num_query_heads=2, num_key_value_heads=1` (num_layers, also
    2, stays). Gemma 3's sliding_window_size (4) coincides with its old
    query head count: the candidate that shrinks it too is caught by the
    probe (token ids vary, lengths past the window) and the plain graph
    stays; both are exact."""
    for name in ("gemma", "gemma3"):
        model = BUILDERS[name]()
        x = sample_inputs(model)
        heads = [g.name for g in kprune.dependency_groups(model) if g.name.endswith(":heads")]
        removal = {n: [1] for n in heads}
        pruned = kprune.remove_channels(model, removal)
        assert_surgery_equivalent(model, removal, inputs=x, pruned=pruned)
        if name == "gemma":
            assert type(pruned) is type(model)
            assert (pruned.num_query_heads, pruned.num_key_value_heads,
                    pruned.num_layers) == (2, 1, 2)
        else:
            assert "does not compute what the pruned graph computes" in (
                kprune.inlined_reasons(pruned)["gemma3_backbone"])
