"""Measure a model where it will run: size, LiteRT latency, TFLite-Micro arena
and int8 accuracy, next to the Keras-side complexity from `kprune.profile`.

Example:
    >>> m = kprune.bench.measure(pruned, eval_data=(x_test, y_test),
    ...                          representative_data=x_train[:200])
    >>> print(m)                      # readable table
    >>> c = kprune.bench.compare(original, pruned, eval_data=(x_test, y_test),
    ...                          representative_data=x_train[:200])
    >>> print(c); c.to_dict()         # side by side, with ratios
"""

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from kprune.runtime import litert, tflm
from kprune.export.tflite import (MODE_NAMES, normalize_quantization, synthetic_calibration,
                                  to_tflite)

DEFAULT_QUANTIZATIONS = (None, "dynamic", "float16", "int8")
DEFAULT_LATENCY_MODES = ("float32", "int8")
#: Calibration samples taken from eval data when no representative data is given.
FALLBACK_CALIBRATION = 200


@dataclasses.dataclass
class Measurement:
    """Everything measured for one model (None where not measurable)."""

    name: str
    source: str  # 'keras' or 'tflite'
    params: Optional[int] = None
    macs: Optional[int] = None
    weight_bytes: Optional[int] = None
    peak_activation_bytes: Optional[int] = None  # float32, kprune.profile
    peak_activation_bytes_int8: Optional[int] = None
    flatbuffer_bytes: Dict[str, int] = dataclasses.field(default_factory=dict)
    latency: Dict[str, litert.LatencyStats] = dataclasses.field(default_factory=dict)
    tflm_arena: Optional[tflm.ArenaReport] = None  # int8 model, recording allocator
    tflm_min_arena_bytes: Optional[int] = None  # smallest arena that allocates and runs
    accuracy: Dict[str, float] = dataclasses.field(default_factory=dict)
    eval_samples: int = 0
    notes: List[str] = dataclasses.field(default_factory=list)

    @property
    def tflm_arena_bytes(self) -> Optional[int]:
        return self.tflm_arena.total_bytes if self.tflm_arena else None

    def to_dict(self) -> Dict:
        d = dataclasses.asdict(self)
        d["latency"] = {k: v.to_dict() for k, v in self.latency.items()}
        d["tflm_arena"] = self.tflm_arena.to_dict() if self.tflm_arena else None
        d["tflm_arena_bytes"] = self.tflm_arena_bytes
        return d

    def __str__(self) -> str:
        from kprune.bench.report import format_measurement
        return format_measurement(self)


def _ratio(a, b) -> Optional[float]:
    if a is None or b is None or b == 0:
        return None
    return float(a) / float(b)


@dataclasses.dataclass
class Comparison:
    """Two measurements side by side; ratios are before / after (so > 1 means
    the second model is smaller or faster)."""

    before: Measurement
    after: Measurement

    @property
    def ratios(self) -> Dict:
        b, a = self.before, self.after
        r = {
            "params": _ratio(b.params, a.params),
            "macs": _ratio(b.macs, a.macs),
            "peak_activation_bytes": _ratio(b.peak_activation_bytes, a.peak_activation_bytes),
            "tflm_arena_bytes": _ratio(b.tflm_arena_bytes, a.tflm_arena_bytes),
            "tflm_min_arena_bytes": _ratio(b.tflm_min_arena_bytes, a.tflm_min_arena_bytes),
            "flatbuffer_bytes": {k: _ratio(b.flatbuffer_bytes.get(k), v)
                                 for k, v in a.flatbuffer_bytes.items()
                                 if k in b.flatbuffer_bytes},
            "latency_speedup": {k: _ratio(b.latency[k].median_ms, v.median_ms)
                                for k, v in a.latency.items() if k in b.latency},
        }
        # The MAC reduction bounds the speedup; report how much of it is realized.
        r["speedup_over_mac_reduction"] = {
            k: (_ratio(s, r["macs"]) if s is not None else None)
            for k, s in r["latency_speedup"].items()}
        r["accuracy_delta"] = {k: a.accuracy[k] - b.accuracy[k]
                               for k in a.accuracy if k in b.accuracy}
        return r

    def to_dict(self) -> Dict:
        return {"before": self.before.to_dict(), "after": self.after.to_dict(),
                "ratios": self.ratios}

    def __str__(self) -> str:
        from kprune.bench.report import format_comparison
        return format_comparison(self)


@dataclasses.dataclass
class _Prepared:
    measurement: Measurement
    model: object  # keras model or None
    flatbuffers: Dict[str, bytes]


def _load(model_or_tflite):
    """(keras model or None, flatbuffer or None, name) from a model, bytes or a path."""
    if isinstance(model_or_tflite, (bytes, bytearray, memoryview)):
        return None, litert.check_flatbuffer(model_or_tflite, "the given TFLite bytes"), \
            "tflite"
    if isinstance(model_or_tflite, (str, os.PathLike)):
        from kprune.data import check_model_file, load_model_file

        path = os.fspath(model_or_tflite)
        name = os.path.splitext(os.path.basename(path))[0]
        if check_model_file(path, "model", (".keras", ".h5", ".tflite")) == ".tflite":
            from kprune.export.tflite import load_tflite
            return None, litert.check_flatbuffer(load_tflite(path), f"'{path}'"), name
        return load_model_file(path, "model", check=False), None, name
    if hasattr(model_or_tflite, "inputs") and hasattr(model_or_tflite, "layers"):
        return model_or_tflite, None, model_or_tflite.name
    raise TypeError(f"expected a Keras model, TFLite bytes or a file path, got "
                    f"{type(model_or_tflite).__name__}")


def _split_eval(eval_data, eval_samples):
    if eval_data is None:
        return None, None
    if not (isinstance(eval_data, (tuple, list)) and len(eval_data) == 2):
        raise ValueError("eval_data must be a pair (x, y): inputs and integer (or "
                         "one-hot) labels")
    x, y = np.asarray(eval_data[0], dtype=np.float32), np.asarray(eval_data[1])
    if len(x) != len(y):
        raise ValueError(f"eval_data has {len(x)} inputs but {len(y)} labels")
    if eval_samples is not None:
        x, y = x[:eval_samples], y[:eval_samples]
    return x, y


def _labels(y):
    return y.argmax(axis=-1) if y.ndim > 1 else y.reshape(-1)


def _check_labels(eval_y, prep):
    """Integer labels must be classes of the model's output (an off-by-one
    labelling would otherwise report a wrong accuracy, not an error)."""
    if eval_y.ndim > 1 and eval_y.shape[-1] > 1:
        return  # one-hot
    if prep.model is not None:
        n = prep.model.outputs[0].shape[-1]
    else:
        fb = next(iter(prep.flatbuffers.values()))
        n = litert.make_interpreter(fb).get_output_details()[0]["shape"][-1]
    labels = _labels(eval_y)
    if not n or n < 2 or not len(labels):
        return
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.mod(labels, 1) == 0):
            raise ValueError("eval_data labels must be integer class ids or one-hot rows")
    lo, hi = labels.min(), labels.max()
    if lo < 0 or hi >= n:
        raise ValueError(
            f"eval_data labels span [{lo:g}, {hi:g}] but '{prep.measurement.name}' has {n} "
            f"output classes (0..{n - 1})"
            + ("; are they 1-based? subtract 1" if lo >= 1 and hi == n else ""))


def _prepare(model_or_tflite, quantizations, representative_data, eval_x, name):
    model, flat, default_name = _load(model_or_tflite)
    m = Measurement(name=name or default_name, source="keras" if model is not None else "tflite")
    flatbuffers: Dict[str, bytes] = {}
    if model is None:
        mode = litert.flatbuffer_mode(flat)
        flatbuffers[mode] = flat
        m.flatbuffer_bytes[mode] = len(flat)
        m.notes.append(f"given a flatbuffer ({mode}): no Keras-side profile or float reference")
        return _Prepared(m, None, flatbuffers)

    from kprune.core.profile import profile
    try:
        p = profile(model)
        m.params, m.macs, m.weight_bytes = p.params, p.macs, p.weight_bytes
        m.peak_activation_bytes = p.peak_activation_bytes
        m.peak_activation_bytes_int8 = p.peak_activation_bytes_int8
    except Exception as err:  # a model kprune cannot trace still gets runtime figures
        m.params = int(model.count_params())
        m.notes.append(f"kprune.profile failed ({type(err).__name__}: {err}); "
                       f"MACs and activation memory not reported")
    calibration = representative_data
    for q in quantizations:
        q = normalize_quantization(q)
        if q == "int8" and calibration is None:
            if eval_x is not None:
                calibration = eval_x[:FALLBACK_CALIBRATION]
                m.notes.append(f"int8 calibrated on the first {len(calibration)} eval "
                               f"samples (no representative_data given)")
            else:
                calibration = synthetic_calibration(model, FALLBACK_CALIBRATION)
                m.notes.append("int8 calibrated on synthetic uniform [0, 1) inputs (no "
                               "representative or eval data): accuracy would be off")
        fb = to_tflite(model, q, representative_data=calibration if q == "int8" else None)
        flatbuffers[MODE_NAMES[q]] = fb
        m.flatbuffer_bytes[MODE_NAMES[q]] = len(fb)
    return _Prepared(m, model, flatbuffers)


def _finish(prep: _Prepared, eval_x, eval_y, with_tflm: bool, min_arena: bool):
    m = prep.measurement
    int8 = prep.flatbuffers.get("int8")
    if with_tflm and int8 is not None:
        try:
            m.tflm_arena = tflm.arena_report(int8)
            if min_arena:
                m.tflm_min_arena_bytes = tflm.min_arena_bytes(int8)
        except tflm.TFLMError as err:
            m.notes.append(f"TFLite-Micro could not run the int8 model: {err}")
    if eval_x is None:
        return
    m.eval_samples = int(len(eval_x))
    labels = _labels(eval_y)
    if prep.model is not None:
        probs = prep.model.predict(eval_x, batch_size=256, verbose=0)
        if isinstance(probs, (list, tuple)):
            probs = probs[0]
        m.accuracy["keras_float32"] = float(np.mean(np.asarray(probs).argmax(-1) == labels))
    if prep.model is None:  # a given float flatbuffer: its own LiteRT accuracy
        for mode, fb in prep.flatbuffers.items():
            if mode != "int8":
                m.accuracy[f"litert_{mode}"] = float(np.mean(
                    litert.predict(fb, eval_x)[0].argmax(-1) == labels))
    if int8 is not None:
        m.accuracy["litert_int8"] = float(np.mean(
            litert.predict(int8, eval_x)[0].argmax(-1) == labels))
        if with_tflm and m.tflm_arena is not None:
            m.accuracy["tflm_int8"] = tflm.accuracy(int8, eval_x, labels)


def measure_many(models: Sequence, names: Optional[Sequence[Optional[str]]] = None,
                 eval_data=None, representative_data=None,
                 quantizations: Sequence = DEFAULT_QUANTIZATIONS,
                 latency_modes: Sequence[str] = DEFAULT_LATENCY_MODES, num_threads: int = 1,
                 warmup: int = 20, runs: int = 200, rounds: int = 5,
                 eval_samples: Optional[int] = 1000, tflm_arena: bool = True,
                 min_arena: bool = True, tflm_latency_runs: int = 10) -> List[Measurement]:
    """`measure` for several models at once, their LiteRT latencies timed
    interleaved in the same rounds (fair under shared-CPU load). Arguments as
    in `measure`; `representative_data` is shared by all models.

    Example:
        >>> before, p30, p50 = measure_many([model, pruned30, pruned50], runs=300)
        >>> Comparison(before, p50).ratios["latency_speedup"]
    """
    names = list(names) if names is not None else [None] * len(models)
    for arg, value, low in (("num_threads", num_threads, 1), ("warmup", warmup, 0),
                            ("runs", runs, 0), ("rounds", rounds, 1),
                            ("tflm_latency_runs", tflm_latency_runs, 0)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{arg} must be an integer >= {low}, got {value!r}")
        if value < low:
            raise ValueError(f"{arg} must be an integer >= {low}, got {value!r}")
    with_tflm = tflm_arena
    known = sorted(set(MODE_NAMES.values()))
    unknown = [m for m in latency_modes if m not in known]
    if unknown:
        raise ValueError(f"latency_modes {unknown} unknown; use some of {known}")
    eval_x, eval_y = _split_eval(eval_data, eval_samples)
    preps = [_prepare(mdl, quantizations, representative_data, eval_x, nm)
             for mdl, nm in zip(models, names)]
    if eval_y is not None:
        for prep in preps:
            _check_labels(eval_y, prep)
    # Latency: every (model, mode) timed interleaved in one session.
    jobs: List[Tuple[_Prepared, str]] = []
    for prep in preps:
        modes = [k for k in prep.flatbuffers if k in latency_modes] or list(prep.flatbuffers)
        jobs.extend((prep, k) for k in modes)
    if jobs and runs > 0:
        stats = litert.interleaved_latency([p.flatbuffers[k] for p, k in jobs],
                                           num_threads=num_threads, warmup=warmup,
                                           runs=runs, rounds=rounds)
        for (prep, mode), s in zip(jobs, stats):
            prep.measurement.latency[mode] = s
    # TFLite-Micro reference kernels: every int8 model timed round-robin.
    micro = [p for p in preps if "int8" in p.flatbuffers]
    if with_tflm and micro and tflm_latency_runs:
        try:
            stats = tflm.interleaved_latency([p.flatbuffers["int8"] for p in micro],
                                             runs=tflm_latency_runs)
        except tflm.TFLMError as err:
            for p in micro:
                p.measurement.notes.append(f"TFLite-Micro latency not measured: {err}")
        else:
            for p, s in zip(micro, stats):
                p.measurement.latency["tflm_int8"] = s
    for prep in preps:
        _finish(prep, eval_x, eval_y, with_tflm, min_arena)
    return [p.measurement for p in preps]


def measure(model_or_tflite, eval_data=None, representative_data=None,
            quantizations: Sequence = DEFAULT_QUANTIZATIONS,
            latency_modes: Sequence[str] = DEFAULT_LATENCY_MODES, num_threads: int = 1,
            warmup: int = 20, runs: int = 200, rounds: int = 5,
            eval_samples: Optional[int] = 1000, tflm_arena: bool = True,
            min_arena: bool = True, name: Optional[str] = None,
            tflm_latency_runs: int = 10) -> Measurement:
    """Measures one model on LiteRT and TFLite-Micro.

    Args:
        model_or_tflite: a Keras model, a `.keras`/`.h5`/`.tflite` path, or
            TFLite bytes (then only runtime figures are measured).
        eval_data: (x, y) for top-1 accuracy: Keras float32, LiteRT int8 and
            TFLite-Micro int8 on the same first `eval_samples` samples.
        representative_data: int8 calibration inputs (default: the first 200
            eval inputs, else synthetic uniform data; both noted).
        quantizations: flatbuffers to build and size (None = float32).
        latency_modes: which of them to time on LiteRT.
        num_threads: LiteRT threads (stated in the report).
        warmup, runs, rounds: untimed invokes, timed invokes, interleaving rounds.
        eval_samples: cap on evaluated samples (None = all).
        tflm_arena: run the int8 model on TFLite-Micro (arena, accuracy).
        min_arena: also binary-search the smallest arena that works.
        tflm_latency_runs: invokes of the int8 model on TFLite-Micro's
            reference kernels, timed as ``latency['tflm_int8']`` (0: skip).

    Returns:
        A `Measurement`; `print()` it for a table, `.to_dict()` for JSON.

    Example:
        >>> m = measure(model, eval_data=(x_test, y_test), representative_data=x[:200])
        >>> m.latency["int8"].median_ms, m.tflm_arena_bytes, m.accuracy["tflm_int8"]
    """
    return measure_many([model_or_tflite], [name], eval_data, representative_data,
                        quantizations, latency_modes, num_threads, warmup, runs, rounds,
                        eval_samples, tflm_arena, min_arena, tflm_latency_runs)[0]


def compare(before, after, eval_data=None, representative_data=None,
            quantizations: Sequence = DEFAULT_QUANTIZATIONS,
            latency_modes: Sequence[str] = DEFAULT_LATENCY_MODES, num_threads: int = 1,
            warmup: int = 20, runs: int = 200, rounds: int = 5,
            eval_samples: Optional[int] = 1000, tflm_arena: bool = True,
            min_arena: bool = True, names: Sequence[Optional[str]] = (None, None),
            tflm_latency_runs: int = 10) -> Comparison:
    """Measures two models (e.g. original and pruned) with the same settings;
    their latencies are timed interleaved. Arguments as in `measure`.

    Example:
        >>> c = compare("original.keras", "pruned.keras", eval_data=(x_test, y_test))
        >>> print(c)
        >>> c.ratios["latency_speedup"]["float32"], c.ratios["macs"]
    """
    b, a = measure_many([before, after], list(names), eval_data, representative_data,
                        quantizations, latency_modes, num_threads, warmup, runs, rounds,
                        eval_samples, tflm_arena, min_arena, tflm_latency_runs)
    if b.name == a.name:
        b.name, a.name = f"{b.name} (before)", f"{a.name} (after)"
    return Comparison(b, a)
