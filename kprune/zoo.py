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
