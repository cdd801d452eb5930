"""Tiny keras-hub backbones (random weights, built from constructor
arguments: nothing is downloaded) and inputs for them, for
tests/test_keras_hub.py and the tutorial."""

import numpy as np

IMAGE = (32, 32, 3)


def _hub():
    import keras_hub
    return keras_hub.models


def mobilenet():
    return _hub().MobileNetBackbone(
        stackwise_expansion=[[40, 56], [64, 144]], stackwise_num_blocks=[2, 2],
        stackwise_num_filters=[[16, 16], [24, 24]],
        stackwise_kernel_size=[[3, 3], [5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1]],
        stackwise_se_ratio=[[None, None], [0.25, 0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish", "hard_swish"]],
        stackwise_padding=[[1, 1], [2, 2]], output_num_filters=64,
        depthwise_filters=8, depthwise_stride=2, depthwise_residual=False,
        last_layer_filter=64, squeeze_and_excite=0.5, image_shape=IMAGE)


def resnet():
    return _hub().ResNetBackbone(
        input_conv_filters=[16], input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32], stackwise_num_blocks=[2, 2],
        stackwise_num_strides=[1, 2], block_type="bottleneck_block",
        image_shape=IMAGE)


def resnet_v2():
    return _hub().ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 32], stackwise_num_blocks=[2, 1],
        stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=True, image_shape=IMAGE)


def efficientnet():
    return _hub().EfficientNetBackbone(
        stackwise_width_coefficients=[1.0] * 3,
        stackwise_depth_coefficients=[1.0] * 3,
        stackwise_kernel_sizes=[3, 3, 5], stackwise_num_repeats=[1, 2, 1],
        stackwise_input_filters=[16, 16, 24], stackwise_output_filters=[16, 24, 40],
        stackwise_expansion_ratios=[1, 4, 4],
        stackwise_squeeze_and_excite_ratios=[0.25, 0.25, 0.25],
        stackwise_strides=[1, 2, 2], stackwise_block_types=["v1", "v1", "v1"],
        stackwise_force_input_filters=[0, 0, 0],
        stackwise_nores_option=[False, False, False],
        input_shape=IMAGE, num_features=64, dropout=0.0)


def cspnet():
    return _hub().CSPNetBackbone(
        stem_filters=32, stem_kernel_size=3, stem_strides=2,
        stackwise_depth=[1, 1], stackwise_strides=[2, 2],
        stackwise_num_filters=[32, 64], block_type="dark_block",
        stage_type="dark",
        image_shape=IMAGE)


def densenet():
    return _hub().DenseNetBackbone(stackwise_num_repeats=[2, 2],
                                   growth_rate=8, image_shape=IMAGE)


def vgg():
    return _hub().VGGBackbone(stackwise_num_repeats=[1, 2],
                              stackwise_num_filters=[16, 32], image_shape=IMAGE)


def xception():
    return _hub().XceptionBackbone(
        stackwise_conv_filters=[[16, 32], [32, 32]],
        stackwise_pooling=[True, False], image_shape=IMAGE)


def hgnetv2():
    return _hub().HGNetV2Backbone(
        depths=[1, 1], embedding_size=16, hidden_sizes=[32, 64],
        stem_channels=[3, 16, 16], hidden_act="relu",
        use_learnable_affine_block=False,
        stackwise_stage_filters=[[16, 16, 32, 1, 2, 3], [32, 16, 64, 1, 2, 3]],
        apply_downsample=[False, True], use_lightweight_conv_block=[False, False],
        image_shape=IMAGE)


def vit():
    return _hub().ViTBackbone(image_shape=(16, 16, 3), patch_size=4,
                              num_layers=2, num_heads=2, hidden_dim=16,
                              mlp_dim=32)


def deit():
    return _hub().DeiTBackbone(image_shape=(16, 16, 3), patch_size=4,
                               num_layers=2, num_heads=2, hidden_dim=16,
                               intermediate_dim=32)


def bert():
    return _hub().BertBackbone(vocabulary_size=50, num_layers=2, num_heads=2,
                               hidden_dim=16, intermediate_dim=32,
                               max_sequence_length=16, dropout=0.0)


def distilbert():
    return _hub().DistilBertBackbone(vocabulary_size=50, num_layers=2,
                                     num_heads=2, hidden_dim=16,
                                     intermediate_dim=32,
                                     max_sequence_length=16, dropout=0.0)


def roberta():
    return _hub().RobertaBackbone(vocabulary_size=50, num_layers=2, num_heads=2,
                                  hidden_dim=16, intermediate_dim=32,
                                  max_sequence_length=16, dropout=0.0)


def gpt2():
    return _hub().GPT2Backbone(vocabulary_size=100, num_layers=2, num_heads=4,
                               hidden_dim=32, intermediate_dim=64,
                               max_sequence_length=16, dropout=0.0)


def electra():
    return _hub().ElectraBackbone(vocab_size=50, num_layers=2, num_heads=2,
                                  hidden_dim=16, embedding_dim=16,
                                  intermediate_dim=32, max_sequence_length=16,
                                  dropout=0.0)


def gemma():
    return _hub().GemmaBackbone(vocabulary_size=100, num_layers=2,
                                num_query_heads=4, num_key_value_heads=2,
                                hidden_dim=32, intermediate_dim=128, head_dim=8)


def gemma3():
    return _hub().Gemma3Backbone(vocabulary_size=100, image_size=16, num_layers=2,
                                 num_query_heads=4, num_key_value_heads=2,
                                 hidden_dim=32, intermediate_dim=128, head_dim=8,
                                 use_sliding_window_attention=True,
                                 sliding_window_size=4)


def llama():
    return _hub().LlamaBackbone(vocabulary_size=100, num_layers=2,
                                num_query_heads=4, num_key_value_heads=2,
                                hidden_dim=32, intermediate_dim=64)


def qwen():
    return _hub().Qwen2Backbone(vocabulary_size=100, num_layers=2,
                                num_query_heads=4, num_key_value_heads=2,
                                hidden_dim=32, intermediate_dim=64)


def mistral():
    return _hub().MistralBackbone(vocabulary_size=100, num_layers=2,
                                  num_query_heads=4, num_key_value_heads=2,
                                  hidden_dim=32, intermediate_dim=64,
                                  sliding_window=4)


def whisper():
    return _hub().WhisperBackbone(vocabulary_size=50, num_layers=2, num_heads=2,
                                  hidden_dim=16, intermediate_dim=32, num_mels=8,
                                  max_encoder_sequence_length=16,
                                  max_decoder_sequence_length=8)


def moonshine():
    return _hub().MoonshineBackbone(vocabulary_size=50, filter_dim=16,
                                    encoder_num_layers=1, decoder_num_layers=1,
                                    hidden_dim=16, intermediate_dim=32,
                                    encoder_num_heads=2, decoder_num_heads=2)


BUILDERS = {f.__name__: f for f in (
    mobilenet, resnet, resnet_v2, efficientnet, cspnet, densenet, vgg, xception,
    hgnetv2,
    vit, deit, bert, distilbert, roberta, gpt2, electra, gemma, gemma3, llama, qwen, mistral, whisper, moonshine)}


#: per-input lengths for unknown axes, where one `seq` does not fit: the
#: Moonshine encoder reads raw audio (its three strided convolutions need
#: 2047 samples for four frames).
LENGTHS = {"MoonshineBackbone": {"encoder_input_values": 2047 + 64 * 3 * 2 * 3,
                                 "encoder_padding_mask": 2047 + 64 * 3 * 2 * 3}}


def sample_inputs(model, batch=2, seq=8, seed=0):
    """Inputs for `model`: images normal, token ids in [1, 40), padding masks
    all ones, audio features normal; unknown lengths become `seq` (or the
    model's entry in `LENGTHS`)."""
    rng = np.random.default_rng(seed)
    lengths = LENGTHS.get(type(model).__name__, {})
    result = {}
    for kt in model.inputs:
        name = kt.name.split(":")[0]
        n = lengths.get(name, seq)
        shape = [batch] + [d if d is not None else n for d in kt.shape[1:]]
        if "mask" in name or "segment" in name:
            fill = np.ones if "mask" in name else np.zeros
            result[name] = fill(shape, dtype=kt.dtype)
        elif "int" in str(kt.dtype):
            result[name] = rng.integers(1, 40, size=shape).astype(kt.dtype)
        else:
            result[name] = rng.normal(size=shape).astype("float32")
    if len(result) == 1 and not isinstance(model.input, dict):
        return next(iter(result.values()))
    return result
