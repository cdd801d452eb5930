"""kprune.bench: TFLite-Micro arena/accuracy, LiteRT latency, compare and CLI."""

import ctypes
import json
import os

import keras
import numpy as np
import pytest

import kprune
from kprune.bench import compare, litert, measure, tflm, tflm_arena_bytes
from kprune.cli.main import bench_main
from kprune.export import to_tflite
from kprune.runtime.capture import capture_fds

pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite_micro")


def _model(width=8, name="net"):
    inp = keras.Input((12, 12, 1), name="image")
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(4, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name=name)


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    original = _model()
    # Remove the 5 lowest-L1 filters of conv1 and 10 of conv2.
    removal = {}
    for layer, n in (("conv1", 5), ("conv2", 10)):
        kernel = original.get_layer(layer).get_weights()[0]
        removal[layer] = np.argsort(np.abs(kernel).sum(axis=(0, 1, 2)))[:n].tolist()
    pruned = kprune.remove_channels(original, removal)
    return original, pruned


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.random((64, 12, 12, 1), dtype=np.float32)
    y = rng.integers(0, 4, 64)
    return x, y


@pytest.fixture(scope="module")
def int8_flats(models, data):
    return [to_tflite(m, "int8", representative_data=data[0]) for m in models]


def test_capture_fds_sees_c_level_writes():
    libc = ctypes.CDLL(None)
    with capture_fds() as cap:
        libc.write(2, b"from C on fd 2\n", 15)
        libc.write(1, b"from C on fd 1\n", 15)
        print("from python")
    assert "from C on fd 2" in cap.text and "from C on fd 1" in cap.text
    assert "from python" in cap.text


def test_tflm_arena_bytes_reports_the_recording_total(int8_flats):
    big, small = int8_flats
    report = tflm.arena_report(small)
    assert tflm_arena_bytes(small) == report.total_bytes
    assert report.total_bytes == report.head_bytes + report.tail_bytes
    assert "NodeAndRegistration struct" in report.breakdown
    # The arena holds at least the largest op's int8 input + output (12*12*8 + 12*12*3).
    assert report.head_bytes >= 12 * 12 * (1 + 3)
    assert tflm_arena_bytes(big) > tflm_arena_bytes(small)


def test_min_arena_is_tight(int8_flats):
    flat = int8_flats[1]
    smallest = tflm.min_arena_bytes(flat, resolution=16)
    it = tflm.interpreter(flat, arena_size=smallest)
    tflm._invoke_zeros(it)
    with pytest.raises(tflm.TFLMError, match="arena"):
        tflm.interpreter(flat, arena_size=smallest - 64)
    # Same order as the recorded total (which excludes TFLM's own allocator objects).
    assert 0.5 * tflm_arena_bytes(flat) < smallest < 2 * tflm_arena_bytes(flat) + 1024


def test_tflm_and_litert_agree_on_int8(int8_flats, data):
    x = data[0][:16]
    a = tflm.predict(int8_flats[1], x)
    b = litert.predict(int8_flats[1], x)[0]
    step = 1.0 / 256  # softmax output quantization step
    assert a.shape == b.shape == (16, 4)
    assert np.abs(a - b).max() <= 2 * step


def test_in_process_report_equals_isolated(int8_flats):
    assert tflm.arena_report(int8_flats[0], isolate=False) == tflm.arena_report(int8_flats[0])


def test_tflm_crash_becomes_an_error(data):
    # All-zero activations before an int8 softmax: TFLM aborts in Prepare.
    inp = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(4, 3, kernel_initializer="zeros", activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax",
                                                kernel_initializer="zeros")(x))
    flat = to_tflite(model, "int8", representative_data=data[0])
    with pytest.raises(tflm.TFLMError, match="SIGABRT"):
        tflm_arena_bytes(flat)
    m = measure(model, representative_data=data[0], quantizations=["int8"], runs=2,
                warmup=0, rounds=1)
    assert m.tflm_arena is None and any("SIGABRT" in n for n in m.notes)


def test_tflm_rejects_non_tflite():
    with pytest.raises(ValueError, match="TFL3"):
        tflm_arena_bytes(b"\x00" * 64)


def test_interleaved_latency_stats(int8_flats):
    stats = litert.interleaved_latency(int8_flats, num_threads=1, warmup=2, runs=20, rounds=4)
    assert len(stats) == 2
    for s in stats:
        assert s.runs == 20 and s.num_threads == 1
        assert 0 < s.min_ms <= s.median_ms <= s.p90_ms


def test_compare_side_by_side(models, data):
    original, pruned = models
    c = compare(original, pruned, eval_data=data, representative_data=data[0],
                runs=20, warmup=2, rounds=2, eval_samples=32)
    r = c.ratios
    assert r["params"] == pytest.approx(original.count_params() / pruned.count_params())
    assert r["macs"] > 2
    assert set(c.after.flatbuffer_bytes) == {"float32", "dynamic", "float16", "int8"}
    assert all(v > 1 for v in r["flatbuffer_bytes"].values())
    assert set(c.after.latency) == {"float32", "int8", "tflm_int8"}
    for mode, speedup in r["latency_speedup"].items():
        assert r["speedup_over_mac_reduction"][mode] == pytest.approx(speedup / r["macs"])
    assert c.before.tflm_arena_bytes > c.after.tflm_arena_bytes > 0
    assert c.after.tflm_min_arena_bytes > 0
    assert set(c.after.accuracy) == {"keras_float32", "litert_int8", "tflm_int8"}
    assert c.after.eval_samples == 32
    text = str(c)
    assert "MACs (batch 1)" in text and "TFLM arena allocated" in text
    assert "of the MAC reduction" in text
    json.dumps(c.to_dict())


def test_measure_a_flatbuffer(int8_flats):
    m = measure(int8_flats[0], runs=10, warmup=1, rounds=1, min_arena=False)
    assert m.source == "tflite" and m.macs is None
    assert m.flatbuffer_bytes == {"int8": len(int8_flats[0])}
    assert m.tflm_arena_bytes == tflm_arena_bytes(int8_flats[0])
    assert "int8" in m.latency


def test_measure_rejects_bad_eval_data(models, data):
    with pytest.raises(ValueError, match="labels"):
        measure(models[1], eval_data=(data[0], data[1][:10]), runs=1)
    with pytest.raises(ValueError, match="pair"):
        measure(models[1], eval_data=data[0], runs=1)
    with pytest.raises(FileNotFoundError):
        measure("/nonexistent/model.keras")


def test_cli_compare_json(models, data, tmp_path, capsys):
    original, pruned = models
    a, b = tmp_path / "original.keras", tmp_path / "pruned.keras"
    original.save(a)
    pruned.save(b)
    npz = tmp_path / "data.npz"
    np.savez(npz, x=data[0], y=data[1])
    out = tmp_path / "res"
    rc = bench_main(["kprune-bench", str(b), "--compare", str(a), "--out", str(out), "--data",
                     str(npz), "--quantizations", "float32,int8", "--runs", "10",
                     "--warmup", "1", "--rounds", "2", "--nomin_arena"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "original" in printed and "pruned" in printed and "ratio" in printed
    result = json.loads((out / "bench.json").read_text())
    assert result["before"]["name"] == "original" and result["after"]["name"] == "pruned"
    assert result["ratios"]["macs"] > 2
    assert set(result["after"]["flatbuffer_bytes"]) == {"float32", "int8"}
    assert result["after"]["accuracy"]["tflm_int8"] is not None
    assert result["after"]["tflm_min_arena_bytes"] is None


def test_cli_bad_data_file_and_old_flags(models, tmp_path, capsys):
    path = tmp_path / "m.keras"
    models[1].save(path)
    assert bench_main(["kprune-bench", str(path), "--data", str(tmp_path / "missing.npz")]) == 2
    assert "is neither one of fashion_mnist, mnist, digits" in capsys.readouterr().err
    # The former argparse flags name their replacement instead of failing obscurely.
    assert bench_main(["kprune-bench", str(path), "--eval-data", "digits"]) == 2
    assert "--eval-data is now --data" in capsys.readouterr().err
    assert bench_main(["kprune-bench", "--runs", "1"]) == 2
    assert "--model is required" in capsys.readouterr().err


def test_one_bench_cli_print_only(models, data, tmp_path, capsys):
    """`kprune-bench MODEL` and `kprune bench --model MODEL` are one command;
    without --out nothing is written; an .npz of x and y is evaluation data."""
    from kprune.cli.main import main

    path = tmp_path / "m.keras"
    models[1].save(path)
    npz = tmp_path / "d.npz"
    np.savez(npz, x=data[0], y=data[1])
    fast = ["--quantizations", "float32", "--latency_modes", "float32", "--runs", "2",
            "--warmup", "0", "--rounds", "1", "--notflm", "--data", str(npz)]
    assert bench_main(["kprune-bench", str(path)] + fast) == 0
    a = capsys.readouterr().out
    assert main(["kprune", "bench", "--model", str(path)] + fast) == 0
    b = capsys.readouterr().out
    assert "keras_float32" in a and a.splitlines()[0] == b.splitlines()[0]
    assert sorted(os.listdir(tmp_path)) == ["d.npz", "m.keras"]


def test_console_script_entry_point():
    import configparser

    from kprune.cli import main

    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(os.path.dirname(__file__), "..", "setup.cfg"))
    scripts = cfg["options.entry_points"]["console_scripts"]
    assert "kprune-bench = kprune.cli.main:run_bench" in scripts
    assert callable(main.run_bench)


def test_bench_bad_inputs_are_named_before_any_timing(tmp_path):
    """Off-by-one labels, an unknown latency mode and a truncated .tflite file
    are errors that name the argument/file and the fix, not wrong figures."""
    import kprune
    from tests.prune_support import small_cnn

    model = small_cnn()
    x = np.random.default_rng(0).random((20, 8, 8, 1), dtype=np.float32)
    y = np.arange(20) % 10
    fast = dict(runs=1, warmup=0, rounds=1, tflm_arena=False, quantizations=["float32"])
    with pytest.raises(ValueError, match=r"labels span \[1, 10\].*10 output classes.*1-based"):
        kprune.bench.measure(model, eval_data=(x, y + 1), **fast)
    with pytest.raises(ValueError, match=r"latency_modes \['int4'\] unknown; use some of"):
        kprune.bench.measure(model, latency_modes=["int4"], **fast)
    flat = kprune.export.to_tflite(model)
    path = tmp_path / "cut.tflite"
    path.write_bytes(flat[: len(flat) // 2])
    with pytest.raises(ValueError, match=r"cut.tflite' is not a complete TFLite flatbuffer.*"
                                         r"convert the model again"):
        kprune.bench.measure(str(path), **fast)
    with pytest.raises(ValueError, match="given TFLite bytes is not a complete"):
        kprune.bench.measure(flat[:-16], **fast)


def test_tflm_latency_interleaved(int8_flats):
    stats = tflm.interleaved_latency(int8_flats[:2], runs=3, warmup=1)
    assert len(stats) == 2
    for s in stats:
        assert s.kernels == "tflm-reference" and s.runs == 3
        assert 0 < s.min_ms <= s.median_ms <= s.p90_ms
    with pytest.raises(ValueError, match="runs=0 must be a positive integer"):
        tflm.interleaved_latency(int8_flats[:1], runs=0)


def test_side_by_side_table_gives_each_column_its_ratio_to_the_reference():
    from kprune.bench import Measurement, format_side_by_side

    def stats(ms):
        return litert.LatencyStats(ms, ms, ms, ms, 10, 1, 1)

    ms = [Measurement("original", "keras", params=1000, macs=4000,
                      latency={"int8": stats(0.4), "tflm_int8": stats(2.0)},
                      accuracy={"litert_int8": 0.90}),
          Measurement("size", "keras", params=100, macs=2000,
                      latency={"int8": stats(0.2)}, accuracy={"litert_int8": 0.89}),
          Measurement("speed", "keras", params=500, macs=1000,
                      latency={"int8": stats(0.1), "tflm_int8": stats(0.5)})]
    text = format_side_by_side(ms)
    rows = {line.split("  ")[0]: line for line in text.splitlines()}
    assert text.splitlines()[0].split() == ["metric", "original", "size", "speed"]
    assert "100 (10.00x)" in rows["parameters"] and "500 (2.00x)" in rows["parameters"]
    assert "1,000 (4.00x)" in rows["MACs (batch 1)"]
    assert "0.100 ms (4.00x)" in rows["LiteRT int8 latency (median)"]
    assert "0.500 ms (4.00x)" in rows["TFLite-Micro int8 latency (median)"]
    assert "89.00% (-1.00 pt)" in rows["top-1 int8 (LiteRT)"]
    # what was not measured is a dash, with no ratio
    assert rows["TFLite-Micro int8 latency (median)"].split()[-4:-2] == ["-", "0.500"]
