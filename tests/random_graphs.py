"""A random Functional-model generator for surgery tests, as rich as real
models: 1-D and 2-D convolutions (strides, dilation, padding variants,
transposed, depthwise and separable with multipliers), every normalization
with and without center/scale and on other axes, softmax-like activations
(as a layer's activation and as Activation/Softmax layers), element-wise
merges and Concatenate over 2-4 branches (a tensor concatenated with
itself), keras.ops with constants, nested Functional and Sequential models
called once or twice (with inputs passed straight to outputs), shared
layers, several inputs and outputs, and boundaries inside prunable graphs;
on sequences, MultiHeadAttention (self and cross, with or without biases,
own value dims), grouped-query attention as keras-hub writes it
(EinsumDense projections, `ops.repeat` of key/value heads, `ops.einsum`
scores, a Softmax, an EinsumDense output), LSTM / GRU / SimpleRNN /
Bidirectional (every merge mode) and Embedding inputs.

One integer seed gives one model, always the same:

    >>> model = random_model(1234)
"""

import keras
import numpy as np
from keras import layers as L

ELEMENTWISE_ACTS = ["relu", "gelu", "tanh", "sigmoid", "swish", "elu",
                    "hard_sigmoid", "softplus", "leaky_relu", "mish", None]
MIXING_ACTS = ["softmax", "log_softmax", "sparsemax"]

BLOCKS = ("conv", "conv", "transpose", "depthwise", "separable", "dense",
          "norm", "norm", "activation", "merge", "merge", "self_concat",
          "ops", "nested", "shared", "structural", "boundary", "attention",
          "recurrent", "grouped_attention")


class _Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.n = 0
        self.dims = int(self.rng.integers(1, 3))
        self.pool = []

    # -- helpers ---------------------------------------------------------
    def name(self, kind):
        self.n += 1
        return f"{kind}{self.n}"

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def chance(self, p):
        return bool(self.rng.random() < p)

    def width(self):
        return int(self.rng.integers(2, 9))

    def act(self, mixing=0.1):
        if self.chance(mixing):
            return self.pick(MIXING_ACTS)
        return self.pick(ELEMENTWISE_ACTS)

    def spatial(self, x):
        return tuple(x.shape[1:-1])

    def cls(self, one, two):
        return one if self.dims == 1 else two

    def same_shape(self, x):
        return [t for t in self.pool if tuple(t.shape) == tuple(x.shape)]

    def same_spatial(self, x):
        return [t for t in self.pool if self.spatial(t) == self.spatial(x)]

    def pointwise(self, x, filters, act=None):
        conv = self.cls(L.Conv1D, L.Conv2D)
        return conv(filters, 1, activation=act, name=self.name("pw"))(x)

    # -- blocks ------------------------------------------------------------
    def conv(self, x):
        size = min(self.spatial(x))
        k = self.pick([1, 2, 3])
        stride = self.pick([1, 1, 2]) if size >= 4 else 1
        dilation = self.pick([1, 2]) if stride == 1 and size >= 6 else 1
        pads = ["same", "valid"] + (["causal"] if self.dims == 1 else [])
        padding = self.pick(pads)
        if padding == "valid" and size - (k - 1) * dilation < 2:
            padding = "same"
        conv = self.cls(L.Conv1D, L.Conv2D)
        return conv(self.width(), k, strides=stride, dilation_rate=dilation,
                    padding=padding, activation=self.act(),
                    use_bias=self.chance(0.8), name=self.name("conv"))(x)

    def transpose(self, x):
        size = max(self.spatial(x))
        stride = self.pick([1, 2]) if size <= 8 else 1
        conv = self.cls(L.Conv1DTranspose, L.Conv2DTranspose)
        y = conv(self.width(), self.pick([1, 2, 3]), strides=stride,
                 padding=self.pick(["same", "valid"]), activation=self.act(),
                 name=self.name("convT"))(x)
        if max(self.spatial(y)) > 10:
            pool = self.cls(L.MaxPooling1D, L.MaxPooling2D)
            y = pool(2, name=self.name("down"))(y)
        return y

    def depthwise(self, x):
        size = min(self.spatial(x))
        stride = self.pick([1, 2]) if size >= 4 else 1
        conv = self.cls(L.DepthwiseConv1D, L.DepthwiseConv2D)
        return conv(self.pick([1, 3]), strides=stride, padding=self.pick(["same", "valid"]) if size >= 4 else "same",
                    depth_multiplier=self.pick([1, 1, 2, 3]),
                    activation=self.act(0.05), name=self.name("dw"))(x)

    def separable(self, x):
        conv = self.cls(L.SeparableConv1D, L.SeparableConv2D)
        return conv(self.width(), self.pick([1, 3]), padding="same",
                    depth_multiplier=self.pick([1, 2]), activation=self.act(),
                    name=self.name("sep"))(x)

    def dense(self, x):
        return L.Dense(self.width(), activation=self.act(),
                       name=self.name("dense"))(x)

    def norm(self, x):
        rank = len(x.shape) - 1
        c = x.shape[-1]
        center, scale = self.chance(0.6), self.chance(0.6)
        kind = self.pick(["batch", "batch", "layer", "group", "unit"])
        name = self.name(kind + "norm")
        if kind == "batch":
            axis = -1 if self.chance(0.8) else int(self.rng.integers(1, rank))
            return L.BatchNormalization(axis=axis, center=center, scale=scale,
                                        name=name)(x)
        if kind == "layer":
            axis = self.pick([-1, 1, [1, rank]])
            return L.LayerNormalization(axis=axis, center=center, scale=scale,
                                        name=name)(x)
        if kind == "group":
            groups = self.pick([g for g in (1, 2, 3, 4, c) if c % g == 0])
            return L.GroupNormalization(groups=groups, center=center,
                                        scale=scale, name=name)(x)
        return L.UnitNormalization(name=name)(x)

    def activation(self, x):
        kind = self.pick(["act", "act", "relu", "leaky", "elu", "prelu", "softmax"])
        name = self.name("act")
        if kind == "act":
            return L.Activation(self.act(0.3), name=name)(x)
        if kind == "relu":
            return L.ReLU(max_value=self.pick([None, 6.0]), name=name)(x)
        if kind == "leaky":
            return L.LeakyReLU(0.2, name=name)(x)
        if kind == "elu":
            return L.ELU(name=name)(x)
        if kind == "prelu":
            rank = len(x.shape) - 1
            shared = self.pick([None, list(range(1, rank))])
            return L.PReLU(shared_axes=shared, alpha_initializer="random_uniform",
                           name=name)(x)
        return L.Softmax(axis=self.pick([-1, 1]), name=name)(x)

    def merge(self, x):
        kind = self.pick(["Add", "Subtract", "Multiply", "Average", "Maximum",
                          "Minimum", "Concatenate"])
        k = 2 if kind == "Subtract" else int(self.rng.integers(2, 5))
        if kind == "Concatenate":
            options = self.same_spatial(x)
            branches = [x]
            for _ in range(k - 1):
                if self.chance(0.5):
                    branches.append(self.pick(options))
                else:
                    branches.append(self.pointwise(x, self.width(), self.act(0)))
            return L.Concatenate(name=self.name("concat"))(branches)
        options = self.same_shape(x)
        branches = [x]
        for _ in range(k - 1):
            if self.chance(0.4):
                branches.append(self.pick(options))
            else:
                branches.append(self.pointwise(x, x.shape[-1], self.act(0)))
        cls = getattr(L, kind)
        return cls(name=self.name(kind.lower()))(branches)

    def self_concat(self, x):
        parts = [x, x] if self.chance(0.5) else [x, self.pointwise(x, 3), x]
        return L.Concatenate(name=self.name("selfcat"))(parts)

    def ops(self, x):
        ops = keras.ops
        kind = self.pick(["scalar", "per_channel", "spatial_const", "binary",
                          "act"])
        c = x.shape[-1]
        if kind == "scalar":
            return x * float(self.rng.uniform(0.5, 2)) + 0.25
        if kind == "per_channel":
            return x * self.rng.uniform(0.5, 2, size=(c,)).astype("float32")
        if kind == "spatial_const":
            shape = self.spatial(x) + (1,)
            return x + self.rng.normal(size=shape).astype("float32")
        if kind == "binary":
            y = self.pick(self.same_shape(x) + [self.pointwise(x, c)])
            fn = self.pick([ops.add, ops.subtract, ops.multiply, ops.maximum,
                            ops.minimum])
            return fn(x, y)
        fn = self.pick([ops.relu, ops.tanh, ops.abs, lambda t: t * ops.sigmoid(t)])
        return fn(x)

    def _sub_model(self, shapes):
        """A small nested model over inputs of `shapes` (batch excluded)."""
        name = self.name("sub")
        if len(shapes) == 1 and self.chance(0.4):
            conv = self.cls(L.Conv1D, L.Conv2D)
            seq = [keras.Input(shapes[0]),
                   conv(self.width(), 1, name=self.name("sconv")),
                   L.BatchNormalization(name=self.name("sbn")),
                   L.ReLU(name=self.name("srelu"))]
            if self.chance(0.5):
                dw = self.cls(L.DepthwiseConv1D, L.DepthwiseConv2D)
                seq.append(dw(3, padding="same", name=self.name("sdw")))
            return keras.Sequential(seq, name=name)
        ins = [keras.Input(s) for s in shapes]
        y = self.pointwise(ins[0], self.width(), self.act(0.1))
        if self.chance(0.5):
            y = L.BatchNormalization(name=self.name("sbn"))(y)
        outs = [y]
        if len(ins) > 1:
            if self.chance(0.5):
                outs.append(ins[1])  # passed straight through
            else:
                outs.append(L.Add(name=self.name("sadd"))(
                    [ins[1], self.pointwise(ins[0], ins[1].shape[-1])]))
        return keras.Model(ins, outs, name=name)

    def nested(self, x):
        two = self.chance(0.5)
        y = self.pointwise(x, self.width()) if two else None
        shapes = [tuple(x.shape[1:])] + ([tuple(y.shape[1:])] if two else [])
        sub = self._sub_model(shapes)
        args = [x, y] if two else x
        out = sub(args)
        results = list(out) if isinstance(out, (list, tuple)) else [out]
        if self.chance(0.6):  # a second call, on other tensors
            x2 = self.pointwise(x, x.shape[-1])
            y2 = self.pointwise(x, y.shape[-1]) if two else None
            out2 = sub([x2, y2] if two else x2)
            results += list(out2) if isinstance(out2, (list, tuple)) else [out2]
        self.pool.extend(results[:-1])
        return results[-1]

    def shared(self, x):
        layer = self.cls(L.Conv1D, L.Conv2D)(
            self.width(), self.pick([1, 3]), padding="same",
            activation=self.act(0.05), name=self.name("shared"))
        other = self.pointwise(x, x.shape[-1])
        a, b = layer(x), layer(other)
        if self.chance(0.5):
            return L.Add(name=self.name("sharedadd"))([a, b])
        self.pool.append(a)
        return b

    def structural(self, x):
        size = min(self.spatial(x))
        kind = self.pick(["maxpool", "avgpool", "pad_crop", "upsample",
                          "dropout", "noise", "identity"])
        name = self.name(kind)
        if kind in ("maxpool", "avgpool") and size >= 4:
            cls = {"maxpool": self.cls(L.MaxPooling1D, L.MaxPooling2D),
                   "avgpool": self.cls(L.AveragePooling1D, L.AveragePooling2D)}[kind]
            return cls(2, padding=self.pick(["same", "valid"]), name=name)(x)
        if kind == "pad_crop":
            y = self.cls(L.ZeroPadding1D, L.ZeroPadding2D)(1, name=name)(x)
            return self.cls(L.Cropping1D, L.Cropping2D)(
                (1, 1) if self.dims == 1 else 1, name=self.name("crop"))(y)
        if kind == "upsample" and max(self.spatial(x)) <= 5:
            return self.cls(L.UpSampling1D, L.UpSampling2D)(2, name=name)(x)
        if kind == "dropout":
            return self.cls(L.SpatialDropout1D, L.SpatialDropout2D)(0.3, name=name)(x)
        if kind == "noise":
            return L.GaussianNoise(0.1, name=name)(x)
        return L.Identity(name=name)(x)

    def boundary(self, x):
        """A layer kprune has no handler for, or a reshape that moves the
        channel axis: the channels on both sides are frozen."""
        if self.dims == 2:
            return L.Permute((2, 1, 3), name=self.name("permute"))(x)
        y = L.Permute((2, 1), name=self.name("permute"))(x)
        y = L.Conv1D(self.width(), 1, name=self.name("conv"))(y)
        return L.Permute((2, 1), name=self.name("permute"))(y)

    def attention(self, x):
        """MultiHeadAttention, self or cross (over any spatial axes), often
        in a residual."""
        kv = self.pick(self.same_spatial(x) or [x])
        mha = L.MultiHeadAttention(
            int(self.rng.integers(1, 4)), int(self.rng.integers(1, 5)),
            value_dim=self.pick([None, int(self.rng.integers(1, 5))]),
            use_bias=self.chance(0.7), name=self.name("mha"))
        y = mha(x, kv)
        return L.Add(name=self.name("res"))([x, y]) if self.chance(0.6) else y

    def grouped_attention(self, x):
        """Grouped-query self attention from EinsumDense and keras.ops, as
        keras-hub's Llama / Qwen / Mistral write it (1-D graphs)."""
        if self.dims != 1:
            return self.attention(x)
        steps = x.shape[1]
        kv = int(self.rng.integers(1, 3))
        heads = kv * int(self.rng.integers(1, 3))
        dim = int(self.rng.integers(1, 4))
        bias = "de" if self.chance(0.5) else None
        q = L.EinsumDense("abc,cde->abde", output_shape=(steps, heads, dim),
                          bias_axes=bias, name=self.name("q"))(x)
        k = L.EinsumDense("abc,cde->abde", output_shape=(steps, kv, dim),
                          name=self.name("k"))(x)
        v = L.EinsumDense("abc,cde->abde", output_shape=(steps, kv, dim),
                          bias_axes=bias, name=self.name("v"))(x)
        k = keras.ops.repeat(k, heads // kv, axis=2)
        v = keras.ops.repeat(v, heads // kv, axis=2)
        scores = keras.ops.einsum("abde,afde->adbf", q, k)
        probs = L.Softmax(axis=-1, name=self.name("softmax"))(scores * 0.5)
        y = keras.ops.einsum("adbf,afde->abde", probs, v)
        y = L.EinsumDense("abde,dec->abc", output_shape=(steps, x.shape[-1]),
                          bias_axes="c" if self.chance(0.5) else None,
                          name=self.name("o"))(y)
        return L.Add(name=self.name("res"))([x, y]) if self.chance(0.6) else y

    def recurrent(self, x):
        """A sequence RNN (1-D graphs; attention on 2-D ones)."""
        if self.dims != 1:
            return self.attention(x)
        cls = self.pick([L.LSTM, L.GRU, L.SimpleRNN])
        kwargs = {"reset_after": self.chance(0.5)} if cls is L.GRU else {}
        if self.chance(0.4):
            rnn = cls(self.width(), return_sequences=True, **kwargs)
            return L.Bidirectional(rnn, merge_mode=self.pick(
                ["concat", "sum", "mul", "ave"]), name=self.name("bi"))(x)
        return cls(self.width(), return_sequences=True, name=self.name("rnn"),
                   **kwargs)(x)

    # -- the model ---------------------------------------------------------
    def head(self, x):
        kind = self.pick(["gap", "gmp", "flatten", "raw", "dense_softmax"])
        gap = self.cls(L.GlobalAveragePooling1D, L.GlobalAveragePooling2D)
        gmp = self.cls(L.GlobalMaxPooling1D, L.GlobalMaxPooling2D)
        if kind == "raw":
            return x
        if kind == "gmp":
            y = gmp(name=self.name("gmp"))(x)
        elif kind == "flatten":
            y = L.Flatten(name=self.name("flat"))(x)
        else:
            y = gap(name=self.name("gap"))(x)
        if self.chance(0.5):
            y = L.Dense(self.width(), activation=self.act(0), name=self.name("fc"))(y)
        act = "softmax" if kind == "dense_softmax" else None
        return L.Dense(int(self.rng.integers(2, 5)), activation=act,
                       name=self.name("out"))(y)

    def build(self):
        size = self.pick([6, 7, 8]) if self.dims == 2 else self.pick([8, 10, 12])
        spatial = (size,) * self.dims
        inputs = [keras.Input(spatial + (self.width(),), name=f"in{k}")
                  for k in range(int(self.rng.integers(1, 3)))]
        for inp in inputs:
            self.pool.append(inp if self.chance(0.2) else self.pointwise(
                inp, self.width(), self.act(0)))
        if self.dims == 1 and self.chance(0.15):  # token ids -> embeddings
            ids = keras.Input((size,), dtype="int32", name="ids")
            inputs.append(ids)
            self.pool.append(L.Embedding(10, self.width(), name=self.name("emb"))(ids))
        x = self.pool[-1]
        for _ in range(int(self.rng.integers(2, 9))):
            kind = self.pick(BLOCKS)
            x = self.pool[-1] if self.chance(0.6) else self.pick(self.pool)
            y = getattr(self, kind)(x)
            self.pool.append(y)
        outputs = [self.head(self.pool[-1])]
        for _ in range(int(self.rng.integers(0, 3))):
            outputs.append(self.head(self.pick(self.pool[len(inputs):])))
        model = keras.Model(inputs if len(inputs) > 1 else inputs[0],
                            outputs if len(outputs) > 1 else outputs[0],
                            name=f"random_{self.n}")
        _randomize_weights(model, self.rng)
        return model


def _randomize_weights(model, rng):
    """Non-trivial biases, normalization parameters and statistics, so that
    slicing mistakes show at the outputs."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not layer.weights or isinstance(layer, keras.Model):
            continue
        values = []
        for w, v in zip(layer.weights, layer.get_weights()):
            name = w.name
            if "variance" in name:
                v = rng.uniform(0.5, 1.5, v.shape)
            elif name in ("gamma", "moving_mean", "beta", "bias", "alpha"):
                v = rng.normal(0.5 if name == "gamma" else 0.0, 0.3, v.shape)
            values.append(np.asarray(v, dtype=v.dtype if hasattr(v, "dtype") else "float32"))
        layer.set_weights(values)


def random_model(seed: int) -> keras.Model:
    """The random model of `seed` (see the module docstring)."""
    keras.utils.set_random_seed(seed % (2**32))
    return _Builder(seed).build()


# -- composite layers (kprune.core.composite) ---------------------------------

@keras.saving.register_keras_serializable(package="kprune_tests")
class RandomComposite(L.Layer):
    """A composite layer drawn from `seed`: conv / depthwise / dense / norm
    sub-layers and keras.ops (activations, a residual add, a gated
    multiply, a channel concat), possibly another composite inside, and,
    with `own_weight`, a per-channel scale of its own (which makes it
    untraceable: kprune keeps it whole)."""

    def __init__(self, seed, channels, dims=2, depth=0, own_weight=False, **kwargs):
        super().__init__(**kwargs)
        self.seed, self.channels, self.dims = seed, channels, dims
        self.depth, self.own_weight = depth, own_weight
        rng = np.random.default_rng(seed)
        conv = L.Conv1D if dims == 1 else L.Conv2D
        dw = L.DepthwiseConv1D if dims == 1 else L.DepthwiseConv2D
        hidden = int(rng.integers(2, 9))
        self.expand = conv(hidden, 1, name="expand")
        self.norm = (L.BatchNormalization(name="bn") if rng.random() < 0.5
                     else L.LayerNormalization(name="ln", center=rng.random() < 0.5))
        self.mid = (dw(3, padding="same", name="dw") if rng.random() < 0.5
                    else L.Dense(hidden, name="mid"))
        self.project = conv(channels, 1, name="project")
        self.kind = str(rng.choice(["residual", "gate", "concat", "plain"]))
        self.gate = L.Dense(channels, name="gate") if self.kind == "gate" else None
        self.inner = (RandomComposite(seed + 1, channels, dims, depth + 1, name="inner")
                      if depth < 1 and rng.random() < 0.5 else None)

    def build(self, shape):
        if self.own_weight:
            self.scale = self.add_weight(shape=(self.out_width(),), initializer="ones",
                                         name="scale")

    def call(self, x):
        ops = keras.ops
        y = ops.relu(self.norm(self.expand(x)))
        y = ops.tanh(self.mid(y))
        y = self.project(y)
        if self.kind == "residual":
            y = ops.add(y, x) if x.shape[-1] == self.channels else y
        elif self.kind == "gate":
            y = y * ops.sigmoid(self.gate(y))
        elif self.kind == "concat":
            y = ops.concatenate([y, ops.relu(y)], axis=-1)
        if self.inner is not None:
            y = self.inner(y)
        if self.own_weight:
            y = y * self.scale
        return y

    def out_width(self):
        if self.inner is not None:
            return self.inner.out_width()
        return self.channels * (2 if self.kind == "concat" else 1)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "channels": self.channels,
                "dims": self.dims, "depth": self.depth, "own_weight": self.own_weight}


def random_composite_model(seed: int) -> keras.Model:
    """A random model built around 1-3 `RandomComposite` layers (one of them
    maybe called twice, maybe one untraceable), between plain layers.

    Example:
        >>> model = random_composite_model(7)
    """
    keras.utils.set_random_seed(seed % (2**32))
    rng = np.random.default_rng(seed)
    dims = int(rng.integers(1, 3))
    conv = L.Conv1D if dims == 1 else L.Conv2D
    x = inp = keras.Input((8,) * dims + (int(rng.integers(2, 5)),), name="in")
    x = conv(int(rng.integers(3, 9)), 3, padding="same", name="stem")(x)
    for k in range(int(rng.integers(1, 4))):
        block = RandomComposite(int(rng.integers(0, 2**31)), int(rng.integers(2, 9)),
                                dims, own_weight=bool(rng.random() < 0.15),
                                name=f"block{k}")
        width = x.shape[-1]
        x = block(x)
        if rng.random() < 0.3 and block.out_width() == width:
            x = block(x)  # shared composite
    gap = L.GlobalAveragePooling1D if dims == 1 else L.GlobalAveragePooling2D
    model = keras.Model(inp, L.Dense(3, name="out")(gap()(x)), name=f"composite_{seed}")
    _randomize_weights(model, rng)
    return model
