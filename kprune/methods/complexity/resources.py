"""What the complexity method measures: parameters, MACs (batch 1) and
peak activation memory of a model (`resources`), and the re-initialisation
of a planned architecture (`reinitialize`).

Example:
    >>> resources(kprune.zoo.lenet5())
    {'params': 61706, 'macs': 416520, 'memory': 23520}
"""

from typing import Dict, Optional

import keras

from kprune.core.complexity_weights import MODES
from kprune.core.profile import profile


#: absolute-budget argument -> the resource it bounds.
ABSOLUTE_TARGETS = {"target_params": "params", "target_macs": "macs",
                    "target_memory_bytes": "memory"}
UNITS = {"params": "parameters", "macs": "MACs", "memory": "bytes"}


def resources(model, memory_dtype: str = "float32", graph=None) -> Dict[str, int]:
    """{'params', 'macs' (MACs, batch 1), 'memory' (peak activation bytes)}
    of `model` from `kprune.profile`.

    Example:
        >>> resources(kprune.zoo.lenet5())
        {'params': 61706, 'macs': 416520, 'memory': 23520}
    """
    if memory_dtype not in ("float32", "int8"):
        raise ValueError(
            f"memory_dtype={memory_dtype!r}: use 'float32' or 'int8' (the "
            "activation type the deployed model runs with)")
    p = profile(model, graph=graph)
    memory = (p.peak_activation_bytes if memory_dtype == "float32"
              else p.peak_activation_bytes_int8)
    return {"params": int(p.params), "macs": int(p.macs), "memory": int(memory)}


def reductions(values, base):
    return {k: (1.0 - values[k] / base[k]) if base[k] else 0.0 for k in MODES}


def widths_of(analysis) -> Dict[str, int]:
    return {g.name: int(g.channels) for g in analysis.groups}



def reinitialize(model, seed: Optional[int] = 0) -> keras.Model:
    """The same architecture with freshly initialised weights (seeded), and
    compiled like `model` (fresh optimizer) when `model` was compiled.

    Example:
        >>> fresh = reinitialize(pruned, seed=0)
        >>> fresh.count_params() == pruned.count_params()
        True
    """
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    serialized = keras.saving.serialize_keras_object(model)
    serialized.pop("build_config", None)
    compiled = serialized.pop("compile_config", None)
    fresh = keras.saving.deserialize_keras_object(serialized)
    if compiled is not None:
        try:
            fresh.compile_from_config(compiled)
        except Exception:  # noqa: BLE001 - custom losses: caller compiles
            pass
    return fresh


def check_step_options(step_fraction, min_channels):
    if not 0.0 < float(step_fraction) <= 1.0:
        raise ValueError(f"step_fraction={step_fraction!r} must be in (0, 1]: "
                         "the fraction of a drawn group's channels one step removes")
    if int(min_channels) < 1:
        raise ValueError(f"min_channels={min_channels!r} must be at least 1")
