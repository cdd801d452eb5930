"""Small hand-built models covering every layer type kprune supports."""

import keras
import numpy as np
from keras import layers


def lenet():
    inp = keras.Input((28, 28, 1))
    x = layers.Conv2D(6, 5, padding="same", activation="relu", name="c1")(inp)
    x = layers.MaxPooling2D(name="p1")(x)
    x = layers.Conv2D(16, 5, activation="relu", name="c2")(x)
    x = layers.MaxPooling2D(name="p2")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(120, activation="relu", name="d1")(x)
    x = layers.Dense(84, activation="relu", name="d2")(x)
    return keras.Model(inp, layers.Dense(10, name="out")(x), name="lenet")


def residual():
    inp = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inp)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    y = layers.Conv2D(8, 3, padding="same", name="b1_c1")(x)
    y = layers.BatchNormalization(name="b1_bn1")(y)
    y = layers.PReLU(shared_axes=[1, 2], name="b1_prelu")(y)
    y = layers.Conv2D(8, 3, padding="same", name="b1_c2")(y)
    y = layers.BatchNormalization(name="b1_bn2")(y)
    x = layers.Add(name="b1_add")([x, y])
    x = layers.Activation("relu", name="b1_out")(x)
    s = layers.Conv2D(12, 1, strides=2, name="b2_short")(x)
    y = layers.Conv2D(12, 3, strides=2, padding="same", name="b2_c1")(x)
    y = layers.ReLU(name="b2_relu")(y)
    y = layers.Conv2D(12, 3, padding="same", name="b2_c2")(y)
    x = layers.Subtract(name="b2_sub")([s, y])
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, layers.Dense(5, name="out")(x), name="residual")


def mobile():
    """Depthwise with multiplier, SE block, separable conv, ops in graph."""
    inp = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inp)
    x = layers.ReLU(6.0, name="stem_relu6")(x)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = layers.BatchNormalization(name="dw_bn")(x)
    x = x * keras.ops.relu6(x + 3.0) / 6.0  # hard-swish as keras ops
    se = layers.GlobalAveragePooling2D(keepdims=True, name="se_gap")(x)
    se = layers.Conv2D(4, 1, activation="relu", name="se_reduce")(se)
    se = layers.Conv2D(16, 1, activation="sigmoid", name="se_expand")(se)
    x = layers.Multiply(name="se_mul")([x, se])
    x = layers.SeparableConv2D(10, 3, depth_multiplier=2, padding="same", name="sep")(x)
    x = layers.LeakyReLU(name="sep_act")(x)
    g = layers.GlobalMaxPooling2D(name="gmp")(x)
    g = layers.Reshape((1, 1, 10), name="reshape")(g)
    g = layers.Dense(6, activation="elu", name="head_dense")(g)
    g = layers.Flatten(name="head_flat")(g)
    return keras.Model(inp, layers.Dense(3, name="out")(g), name="mobile")


def concat_norms():
    """Concatenate (offsets), GroupNorm, LayerNorm (exact only by group),
    Maximum/Minimum/Average, padding, cropping, up-sampling, dropout."""
    inp = keras.Input((12, 12, 4))
    a = layers.Conv2D(6, 3, padding="same", name="a")(inp)
    a = layers.GroupNormalization(groups=3, name="a_gn")(a)
    b = layers.Conv2D(4, 3, padding="same", activation="tanh", name="b")(inp)
    b = layers.SpatialDropout2D(0.2, name="b_drop")(b)
    x = layers.Concatenate(name="cat")([a, b])
    x = layers.ZeroPadding2D(1, name="pad")(x)
    x = layers.Cropping2D(1, name="crop")(x)
    x = layers.AveragePooling2D(2, name="avg")(x)
    x = layers.UpSampling2D(name="up")(x)
    c = layers.Conv2D(10, 1, name="c")(x)
    d = layers.Conv2D(10, 1, name="d")(x)
    e = layers.Conv2D(10, 1, name="e")(x)
    x = layers.Maximum(name="max")([c, d])
    x = layers.Average(name="avgm")([x, e])
    x = layers.Minimum(name="min")([x, c])
    x = layers.Dropout(0.3, name="drop")(x)
    x = layers.Conv2DTranspose(6, 3, strides=2, padding="same", name="tconv")(x)
    x = layers.Activation("swish", name="swish")(x)
    x = layers.Flatten(name="flat")(x)
    return keras.Model(inp, layers.Dense(4, name="out")(x), name="concat_norms")


def conv1d_3d():
    inp = keras.Input((20, 3))
    x = layers.Conv1D(8, 3, padding="same", activation="relu", name="c1d")(inp)
    x = layers.SeparableConv1D(6, 3, padding="same", name="sep1d")(x)
    x = layers.DepthwiseConv1D(3, padding="same", name="dw1d")(x)
    x = layers.MaxPooling1D(name="pool1d")(x)
    x = layers.Dense(5, activation="relu", name="dense3d")(x)  # Dense on 3-D input
    x = layers.LayerNormalization(axis=1, name="ln_time")(x)  # not over channels
    x = layers.GlobalAveragePooling1D(name="gap1d")(x)
    out1 = layers.Dense(2, name="out")(x)
    inp3 = keras.Input((6, 6, 6, 2))
    y = layers.Conv3D(4, 3, padding="same", name="c3d")(inp3)
    y = layers.BatchNormalization(name="bn3d")(y)
    y = layers.Conv3D(3, 1, name="c3d_b")(y)
    y = layers.GlobalAveragePooling3D(name="gap3d")(y)
    out2 = layers.Dense(2, name="out3d")(y)
    return keras.Model([inp, inp3], [out1, out2], name="conv1d_3d")


def nested_shared():
    """A Sequential inside a functional model, called twice (shared)."""
    block = keras.Sequential([
        keras.Input((10, 10, 3)),
        layers.Conv2D(6, 3, padding="same", name="inner_c"),
        layers.BatchNormalization(name="inner_bn"),
        layers.ReLU(name="inner_relu"),
    ], name="block")
    inp = keras.Input((10, 10, 3))
    flipped = layers.Rescaling(-1.0, name="neg")(inp)
    a = block(inp)
    b = block(flipped)
    x = layers.Add(name="merge")([a, b])
    shared = layers.Conv2D(5, 1, name="shared_c")
    y = layers.Add(name="merge2")([shared(x), shared(a)])
    y = layers.Flatten(name="flat")(y)
    return keras.Model(inp, layers.Dense(2, name="out")(y), name="nested_shared")


def layer_norm():
    inp = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", name="c")(inp)
    x = layers.LayerNormalization(name="ln")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, layers.Dense(2, name="out")(x), name="layer_norm")


ALL = {f.__name__: f for f in (lenet, residual, mobile, concat_norms,
                                conv1d_3d, nested_shared)}


def preprocessing_mid_graph():
    """Per-channel Rescaling / Normalization after a conv, and a Reshape that
    flattens with an explicit size."""
    inp = keras.Input((6, 6, 2))
    x = layers.Conv2D(4, 3, padding="same", name="c")(inp)
    x = layers.Rescaling([0.5, 1.0, 2.0, 3.0], offset=[0.0, 1.0, -1.0, 0.5],
                         name="scale")(x)
    norm = layers.Normalization(name="norm")
    x = norm(x)
    norm.set_weights([np.array([0.1, 0.2, -0.3, 0.4], "float32"),
                      np.array([1.0, 2.0, 0.5, 4.0], "float32"),
                      np.array(1, "int64")])
    x = layers.Reshape((6 * 6 * 4,), name="flat")(x)
    return keras.Model(inp, layers.Dense(3, name="out")(x), name="prep")


ALL["preprocessing_mid_graph"] = preprocessing_mid_graph
