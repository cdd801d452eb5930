"""Terminal tables for `Measurement` and `Comparison` (JSON: their to_dict()).

Example:
    >>> print(format_comparison(kprune.bench.compare(original, pruned)))
    >>> print(format_side_by_side(kprune.bench.measure_many([a, b, c])))
"""

from typing import List, Optional, Sequence


def _num(v, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}{unit}"
    return f"{v:,}{unit}"


def _kib(v) -> str:
    return "-" if v is None else f"{v / 1024:.1f} KiB"


def _ms(stats) -> str:
    return "-" if stats is None else f"{stats.median_ms:.3f} / {stats.p90_ms:.3f} ms"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _x(v) -> str:
    return "-" if v is None else f"{v:.2f}x"


def table(rows: Sequence[Sequence[str]], header: Optional[Sequence[str]] = None) -> str:
    """Left-aligned plain-text table."""
    rows = [list(map(str, r)) for r in rows]
    if header:
        rows.insert(0, list(header))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if header:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _rows(m) -> List[List[str]]:
    rows = [["parameters", _num(m.params)],
            ["MACs (batch 1)", _num(m.macs)],
            ["peak activations float32 / int8 (kprune.profile)",
             f"{_kib(m.peak_activation_bytes)} / {_kib(m.peak_activation_bytes_int8)}"]]
    for mode, size in m.flatbuffer_bytes.items():
        rows.append([f"flatbuffer {mode}", f"{size:,} B ({_kib(size)})"])
    for mode, s in m.latency.items():
        if s.kernels == "tflm-reference":
            rows.append([f"TFLite-Micro int8 latency median / p90 (reference kernels, "
                         f"{s.runs} runs)", _ms(s)])
            continue
        rows.append([f"LiteRT {mode} latency median / p90 ({s.num_threads} thread"
                     f"{'s' if s.num_threads != 1 else ''}, {s.runs} runs"
                     f"{', builtin kernels' if s.kernels != 'xnnpack' else ''})", _ms(s)])
    rows.append(["TFLM arena allocated (recording allocator)",
                 "-" if m.tflm_arena is None else
                 f"{m.tflm_arena.total_bytes:,} B (head {m.tflm_arena.head_bytes:,}, "
                 f"tail {m.tflm_arena.tail_bytes:,})"])
    rows.append(["TFLM smallest working arena", _num(m.tflm_min_arena_bytes, " B")])
    for k, v in m.accuracy.items():
        rows.append([f"top-1 {k} ({m.eval_samples} samples)", _pct(v)])
    return rows


def format_measurement(m) -> str:
    """A two-column table of one `Measurement`, then its notes."""
    text = f"== {m.name} ({m.source})\n" + table(_rows(m), ["metric", "value"])
    if m.notes:
        text += "\n" + "\n".join(f"note: {n}" for n in m.notes)
    return text


def format_comparison(c) -> str:
    """Before, after and ratio (before / after) columns, then the MAC-bound check."""
    b, a, r = c.before, c.after, c.ratios
    rows = [["parameters", _num(b.params), _num(a.params), _x(r["params"])],
            ["MACs (batch 1)", _num(b.macs), _num(a.macs), _x(r["macs"])],
            ["peak activations float32", _kib(b.peak_activation_bytes),
             _kib(a.peak_activation_bytes), _x(r["peak_activation_bytes"])]]
    for mode, size in a.flatbuffer_bytes.items():
        rows.append([f"flatbuffer {mode}", _kib(b.flatbuffer_bytes.get(mode)), _kib(size),
                     _x(r["flatbuffer_bytes"].get(mode))])
    for mode, s in a.latency.items():
        label = (f"TFLite-Micro int8 median / p90 (reference, {s.runs} runs)"
                 if s.kernels == "tflm-reference" else
                 f"LiteRT {mode} median / p90 ({s.num_threads} thr, {s.runs} runs)")
        rows.append([label,
                     _ms(b.latency.get(mode)), _ms(s), _x(r["latency_speedup"].get(mode))])
    rows.append(["TFLM arena allocated", _num(b.tflm_arena_bytes, " B"),
                 _num(a.tflm_arena_bytes, " B"), _x(r["tflm_arena_bytes"])])
    rows.append(["TFLM smallest working arena", _num(b.tflm_min_arena_bytes, " B"),
                 _num(a.tflm_min_arena_bytes, " B"), _x(r["tflm_min_arena_bytes"])])
    for k, v in a.accuracy.items():
        rows.append([f"top-1 {k} ({a.eval_samples} samples)", _pct(b.accuracy.get(k)),
                     _pct(v), "-" if k not in b.accuracy else
                     f"{100 * (v - b.accuracy[k]):+.2f} pt"])
    text = table(rows, ["metric", b.name, a.name, "ratio"])
    checks = []
    for mode, frac in r["speedup_over_mac_reduction"].items():
        if frac is not None:
            checks.append(f"{mode}: latency speedup {r['latency_speedup'][mode]:.2f}x = "
                          f"{frac:.2f} of the MAC reduction {r['macs']:.2f}x")
    if checks:
        text += "\n" + "\n".join(checks)
    notes = [f"note ({m.name}): {n}" for m in (b, a) for n in m.notes]
    if notes:
        text += "\n" + "\n".join(notes)
    return text


def format_side_by_side(measurements: Sequence, reference: int = 0) -> str:
    """One column per `Measurement` with the headline figures (parameters,
    MACs, int8 size, LiteRT and TFLite-Micro int8 latency, TFLM arena, int8
    accuracy), each followed by its ratio to the `reference` column
    (reference / model: > 1 means smaller or faster).

    Example:
        >>> ms = kprune.bench.measure_many([original, small, fast],
        ...                                names=["original", "size", "speed"])
        >>> print(format_side_by_side(ms))
    """
    ref = measurements[reference]

    def latency(m, mode):
        s = m.latency.get(mode)
        return None if s is None else s.median_ms

    rows_spec = [
        ("parameters", lambda m: m.params, _num, True),
        ("MACs (batch 1)", lambda m: m.macs, _num, True),
        ("int8 flatbuffer", lambda m: m.flatbuffer_bytes.get("int8"), _kib, True),
        ("LiteRT int8 latency (median)", lambda m: latency(m, "int8"),
         lambda v: "-" if v is None else f"{v:.3f} ms", True),
        ("TFLite-Micro int8 latency (median)", lambda m: latency(m, "tflm_int8"),
         lambda v: "-" if v is None else f"{v:.3f} ms", True),
        ("TFLM arena", lambda m: m.tflm_arena_bytes, lambda v: _num(v, " B"), True),
        ("top-1 float32 (Keras)", lambda m: m.accuracy.get("keras_float32"), _pct, False),
        ("top-1 int8 (LiteRT)", lambda m: m.accuracy.get("litert_int8"), _pct, False),
        ("top-1 int8 (TFLite-Micro)", lambda m: m.accuracy.get("tflm_int8"), _pct, False),
    ]
    rows = []
    for label, get, fmt, ratio in rows_spec:
        base = get(ref)
        row = [label]
        for i, m in enumerate(measurements):
            v = get(m)
            cell = fmt(v)
            if i != reference and v is not None and base is not None:
                cell += (f" ({base / v:.2f}x)" if ratio and v else
                         "" if ratio else f" ({100 * (v - base):+.2f} pt)")
            row.append(cell)
        rows.append(row)
    return table(rows, ["metric"] + [m.name for m in measurements])
