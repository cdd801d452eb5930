"""Recurrent layers: the units of LSTM, GRU, SimpleRNN and Bidirectional.

A unit u of an RNN is output channel u of its sequence output and of every
state it returns; its gate blocks are the columns u, n + u, 2n + u, ... of
the kernel, the recurrent kernel and the bias (roles 'out@G' for G gates:
LSTM 4, GRU 3, SimpleRNN 1), and the rows u of the recurrent kernel (role
'in:state', the layer's own outputs read back at the next step). Input
features are the kernel's rows, so upstream layers stay prunable. Initial
states passed with `initial_state=` carry the units too and are coupled to
them. Bidirectional has the unit sets '<layer>:forward' and
'<layer>:backward' (side by side in the output for merge_mode 'concat',
separate outputs for None, summed / multiplied / averaged otherwise); Keras
gives both directions one width, so forward unit u and backward unit u are
removed together (one group, '<layer>:forward').

Example:
    >>> kprune.remove_channels(model, {"gru": [0, 5]})            # 2 units
    >>> kprune.remove_channels(model, {"bi:forward": [3]})        # both directions' unit 3
"""

import numpy as np
from keras import layers

from kprune.core._keras_compat import argument_slots
from kprune.core.handlers.base import ChannelHandler, register_handler

_GATES = {layers.LSTM: 4, layers.GRU: 3, layers.SimpleRNN: 1}


def gates_of(rnn) -> int:
    for cls, g in _GATES.items():
        if isinstance(rnn, cls):
            return g
    raise TypeError(f"not an LSTM / GRU / SimpleRNN: {type(rnn).__name__}")


def _rnn_roles(rnn, unit_role, state_role, in_role="in"):
    """Roles of one RNN's weights (kernel, recurrent_kernel, bias), in order."""
    g = gates_of(rnn)
    block = f"{unit_role}@{g}" if g > 1 else unit_role
    roles = []
    for w in rnn.weights:
        name = w.path.rsplit("/", 1)[-1]
        if name == "kernel":
            roles.append((in_role, block))
        elif name == "recurrent_kernel":
            roles.append((state_role, block))
        elif name == "bias":
            roles.append((None,) * (len(w.shape) - 1) + (block,))
        else:
            roles.append(None)
    return roles


def _input_slots(call):
    """(position of the sequence, positions of the `initial_state` tensors)
    in `call.inputs`."""
    slots = argument_slots(call.node, ("sequences", "initial_state"))
    states = slots.get("initial_state", [])
    return slots.get("sequences", 0), [states] if isinstance(states, int) else list(states)


def _fix_extra_inputs(call, ctx, used, what):
    """Freezes the inputs at positions not in `used` (masks, constants)."""
    for i, tid in enumerate(call.inputs):
        if i not in used:
            ctx.fix(ctx.layout(tid), f"it is a mask or constant passed to "
                    f"{what} '{call.path}'")


class RNNHandler(ChannelHandler):
    """LSTM / GRU (reset_after True or False) / SimpleRNN."""

    layer_types = tuple(_GATES)
    mixes_channels = True

    def propagate(self, call, ctx):
        layer = call.layer
        units = ctx.new_channels(call, layer.units)
        seq, states = _input_slots(call)
        for i in states:
            ctx.couple(ctx.layout(call.inputs[i]), units)
        _fix_extra_inputs(call, ctx, {seq, *states}, call.class_name)
        return [units] * len(call.outputs)

    def weight_roles(self, layer, in_channels, out_channels):
        return {i: r for i, r in enumerate(_rnn_roles(layer, "out", "in:state"))
                if r is not None}

    def update_config(self, config, layer, in_keep, out_keep):
        config["units"] = len(out_keep)


class BidirectionalHandler(ChannelHandler):
    """Bidirectional over an LSTM / GRU / SimpleRNN, any merge mode."""

    layer_types = (layers.Bidirectional,)
    mixes_channels = True

    def propagate(self, call, ctx):
        layer = call.layer
        fwd_l, bwd_l = layer.forward_layer, layer.backward_layer
        for sub in (fwd_l, bwd_l):
            if type(sub) not in _GATES and not isinstance(sub, tuple(_GATES)):
                ctx.fix(ctx.input_layout(call), f"Bidirectional '{call.path}' "
                        f"wraps a {type(sub).__name__}, which kprune has no handler for")
                outs = []
                for k, tid in enumerate(call.outputs):
                    c = ctx.new_channels(call, ctx.tensor(tid).channels, k)
                    ctx.fix(c, f"output of Bidirectional '{call.path}'")
                    outs.append(c)
                return outs
        fwd = ctx.internal_channels(call, "forward", fwd_l.units)
        bwd = ctx.internal_channels(call, "backward", bwd_l.units)
        seq, states = _input_slots(call)
        n_states = 2 if isinstance(fwd_l, layers.LSTM) else 1
        for j, i in enumerate(states):
            ctx.couple(ctx.layout(call.inputs[i]), fwd if j < n_states else bwd)
        _fix_extra_inputs(call, ctx, {seq, *states}, "Bidirectional")
        # Keras builds both directions at one width (its output shapes
        # assume it), so forward unit u and backward unit u go together.
        ctx.couple(fwd, bwd)
        mode = layer.merge_mode
        if mode == "concat":
            merged = [np.concatenate([fwd, bwd])]
        elif mode in ("sum", "mul", "ave"):
            merged = [fwd]
        else:  # None: the two sequences apart
            merged = [fwd, bwd]
        return merged + [fwd] * n_states * int(layer.return_state) + \
            [bwd] * n_states * int(layer.return_state)

    def weight_roles(self, layer, in_channels, out_channels):
        roles = _rnn_roles(layer.forward_layer, "unit:forward", "unit:forward")
        roles += _rnn_roles(layer.backward_layer, "unit:backward", "unit:backward")
        return {i: r for i, r in enumerate(roles) if r is not None}

    def rewrite_config(self, config, layer, keeps):
        config["layer"]["config"]["units"] = len(keeps.units["forward"])
        backward = config.get("backward_layer")
        if backward is None:  # written out when the directions now differ
            backward = layer.backward_layer.get_config()
            backward = {"module": "keras.layers", "class_name":
                        type(layer.backward_layer).__name__, "config": backward,
                        "registered_name": None}
            config["backward_layer"] = backward
        backward["config"]["units"] = len(keeps.units["backward"])
        for sub in (config["layer"], backward):  # built again at the new widths
            sub.pop("build_config", None)


for _h in (RNNHandler(), BidirectionalHandler()):
    register_handler(_h, first=False)
