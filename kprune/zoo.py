"""Reference models used by the tests, the demo and the benchmarks.

Example:
    >>> from kprune.zoo import lenet5, resnet20
    >>> lenet5().count_params()
    61706
"""

import keras
from keras import layers


def lenet5(input_shape=(28, 28, 1), num_classes=10, name="lenet5"):
    """The classic LeNet-5 of the method spec (61,706 parameters for 28x28x1).

    Conv 6@5x5 (same) - ReLU - MaxPool 2 - Conv 16@5x5 (valid) - ReLU -
    MaxPool 2 - Flatten - Dense 120 - ReLU - Dense 84 - ReLU - Dense
    ``num_classes`` (softmax).

    Example:
        >>> model = lenet5()
        >>> model.output_shape
        (None, 10)
    """
    inputs = keras.Input(shape=input_shape, name="input")
    x = layers.Conv2D(6, 5, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 5, padding="valid", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(120, activation="relu", name="fc1")(x)
    x = layers.Dense(84, activation="relu", name="fc2")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def _basic_block(x, filters, stride, prefix):
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=f"{prefix}_conv1")(x)
    y = layers.BatchNormalization(name=f"{prefix}_bn1")(y)
    y = layers.ReLU(name=f"{prefix}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=f"{prefix}_conv2")(y)
    y = layers.BatchNormalization(name=f"{prefix}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        # Option B: projection shortcut (1x1 conv + BN) when the shape changes.
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                 kernel_initializer="he_normal",
                                 name=f"{prefix}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{prefix}_proj_bn")(shortcut)
    y = layers.Add(name=f"{prefix}_add")([y, shortcut])
    return layers.ReLU(name=f"{prefix}_out")(y)


def resnet20(input_shape=(32, 32, 3), num_classes=10, width=16, name="resnet20"):
    """CIFAR-style ResNet-20 (He et al. 2016): 3 stages of 3 basic blocks.

    Stage widths are ``width, 2*width, 4*width`` (16/32/64 by default), with
    BatchNorm and option-B 1x1 projection shortcuts where the shape changes.
    About 0.27 M parameters at the default width.

    Example:
        >>> model = resnet20(input_shape=(28, 28, 1))
        >>> model.output_shape
        (None, 10)
    """
    inputs = keras.Input(shape=input_shape, name="input")
    x = layers.Conv2D(width, 3, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate((width, 2 * width, 4 * width)):
        for block in range(3):
            stride = 2 if (stage > 0 and block == 0) else 1
            x = _basic_block(x, filters, stride, f"s{stage + 1}b{block + 1}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def ds_cnn(input_shape=(49, 10, 1), num_classes=12, width=64, name="ds_cnn"):
    """DS-CNN keyword spotting (Zhang et al. 2017, "Hello Edge", small size):
    a 10x4 stride-2 conv of ``width`` filters on 49x10 MFCC frames, then 4
    depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, BN, ReLU),
    global average pooling and a ``num_classes`` softmax (12 for Speech
    Commands). About 24 k parameters at the default width.

    Example:
        >>> ds_cnn().output_shape
        (None, 12)
    """
    inputs = keras.Input(shape=input_shape, name="input")
    x = layers.Conv2D(width, (10, 4), strides=2, padding="same", use_bias=False,
                      name="conv0")(inputs)
    x = layers.BatchNormalization(name="bn0")(x)
    x = layers.ReLU(name="relu0")(x)
    for i in range(1, 5):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{i}")(x)
        x = layers.BatchNormalization(name=f"dw{i}_bn")(x)
        x = layers.ReLU(name=f"dw{i}_relu")(x)
        x = layers.Conv2D(width, 1, use_bias=False, name=f"pw{i}")(x)
        x = layers.BatchNormalization(name=f"pw{i}_bn")(x)
        x = layers.ReLU(name=f"pw{i}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def patch_tokens(images, patch=7):
    """Images ``(N, H, W[, C])`` as ViT tokens: non-overlapping ``patch`` x
    ``patch`` patches, flattened, each followed by a one-hot patch index.

    Returns ``(N, (H/patch)*(W/patch), patch*patch*C + tokens)`` float32. The
    first Dense of :func:`vit_tiny` then computes a patch embedding plus a
    learned position embedding (its rows for the one-hot part) in one plain
    Keras layer, so the whole model stays prunable with no custom layer.

    Example:
        >>> import numpy as np
        >>> patch_tokens(np.zeros((2, 28, 28, 1)), patch=7).shape
        (2, 16, 65)
    """
    import numpy as np

    x = np.asarray(images, dtype="float32")
    if x.ndim == 3:
        x = x[..., None]
    n, h, w, c = x.shape
    if h % patch or w % patch:
        raise ValueError(f"patch_tokens: patch={patch} must divide the image size {h}x{w}")
    gh, gw = h // patch, w // patch
    t = x.reshape(n, gh, patch, gw, patch, c).transpose(0, 1, 3, 2, 4, 5)
    t = t.reshape(n, gh * gw, patch * patch * c)
    eye = np.broadcast_to(np.eye(gh * gw, dtype="float32"), (n, gh * gw, gh * gw))
    return np.concatenate([t, eye], axis=-1)


def vit_tiny(input_shape=(16, 65), num_classes=10, dim=48, num_heads=4, key_dim=12,
             mlp_dim=96, blocks=2, name="vit_tiny"):
    """A small pre-norm Vision Transformer over patch tokens (:func:`patch_tokens`).

    Dense patch + position embedding to ``dim``, then ``blocks`` x
    [LayerNorm - MultiHeadAttention(``num_heads``, ``key_dim``) - residual
    add - LayerNorm - Dense ``mlp_dim`` (GELU) - Dense ``dim`` - residual
    add], a final LayerNorm, global average pooling over tokens and a
    ``num_classes`` softmax. All plain Keras layers: heads, head dims, the
    MLP widths and the model width (the residual stream) are prunable.
    About 42 k parameters at the defaults (16 tokens of 7x7 Fashion-MNIST
    patches).

    Example:
        >>> vit_tiny().output_shape
        (None, 10)
    """
    inputs = keras.Input(shape=input_shape, name="tokens")
    x = layers.Dense(dim, name="embed")(inputs)
    for b in range(blocks):
        h = layers.LayerNormalization(epsilon=1e-6, name=f"b{b}_ln1")(x)
        h = layers.MultiHeadAttention(num_heads, key_dim, name=f"b{b}_mha")(h, h)
        x = layers.Add(name=f"b{b}_add1")([x, h])
        h = layers.LayerNormalization(epsilon=1e-6, name=f"b{b}_ln2")(x)
        h = layers.Dense(mlp_dim, activation="gelu", name=f"b{b}_mlp1")(h)
        h = layers.Dense(dim, name=f"b{b}_mlp2")(h)
        x = layers.Add(name=f"b{b}_add2")([x, h])
    x = layers.LayerNormalization(epsilon=1e-6, name="ln_f")(x)
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def gru_rows(input_shape=(28, 28), num_classes=10, units=64, depth=2, cell="gru",
             name=None):
    """A recurrent classifier reading an image one row per time step.

    ``depth`` stacked ``cell`` layers ("gru" or "lstm") of ``units`` units
    (all but the last return sequences), then a ``num_classes`` softmax on
    the last state. About 44 k parameters at the defaults (GRU, 28 rows of
    28 pixels).

    Example:
        >>> gru_rows().output_shape
        (None, 10)
        >>> gru_rows(cell="lstm").get_layer("rnn1").__class__.__name__
        'LSTM'
    """
    cls = {"gru": layers.GRU, "lstm": layers.LSTM}.get(cell)
    if cls is None:
        raise ValueError(f"gru_rows: cell={cell!r} must be 'gru' or 'lstm'")
    inputs = keras.Input(shape=input_shape, name="rows")
    x = inputs
    for d in range(depth):
        x = cls(units, return_sequences=d < depth - 1, name=f"rnn{d + 1}")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name or f"{cell}_rows")
