"""The `kprune` command line: absl flags, help, safe loading, data sources,
outputs confined to --out, and the prune / export / bench subcommands."""

import json
import os
import sys

import keras
import numpy as np
import pytest
from keras import layers

from kprune.cli import common
from kprune.cli import main as cli



def tiny_model(path=None, lam=False, compiled=True):
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="image")
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    if lam:
        x = layers.Lambda(lambda t: t * 2.0, name="double")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(16, activation="relu", name="fc1")(x)
    out = layers.Dense(3, activation="softmax", name="out")(x)
    model = keras.Model(inp, out, name="tiny")
    if compiled:
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    if path is not None:
        model.save(path)
    return model


def tiny_npz(path, n=240, with_val=False, with_test=True, drop=()):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.6, (n, 8, 8, 1)).astype("float32")
    for c in range(3):  # learnable: class c brightens one band of rows
        x[y == c, 2 * c:2 * c + 3] += 0.5
    arrays = {"x_train": x[:160], "y_train": y[:160]}
    if with_val:
        arrays.update(x_val=x[160:200], y_val=y[160:200])
    if with_test:
        arrays.update(x_test=x[200:], y_test=y[200:])
    for k in drop:
        arrays.pop(k)
    np.savez(path, **arrays)
    return path


def flag_names(command):
    fv = common.new_flag_values()
    cli.COMMANDS[command].define_flags(fv)
    return {fv[n].name for n in fv}


@pytest.mark.parametrize("command", ["prune", "bench", "export"])
def test_help_documents_every_flag(command, capsys):
    assert cli.main(["kprune", command, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"kprune {command}")
    for name in flag_names(command):
        assert f"--{name}" in text or f"--[no]{name}" in text, name
    for name in ("model", "out", "unsafe_load"):
        assert name in flag_names(command)


def test_usage_and_flag_errors(capsys):
    assert cli.main(["kprune", "--help"]) == 0
    assert "prune" in capsys.readouterr().out
    assert cli.main(["kprune"]) == 2
    assert cli.main(["kprune", "shrink"]) == 2
    assert "unknown command 'shrink'" in capsys.readouterr().err
    assert cli.main(["kprune", "prune", "--method=magic"]) == 2
    assert "iap|ilp|aiap|complexity" in capsys.readouterr().err
    assert cli.main(["kprune", "prune", "--epochs=-1"]) == 2
    assert cli.main(["kprune", "prune", "model.keras"]) == 2
    assert "unexpected arguments" in capsys.readouterr().err


def test_missing_required_inputs_are_named(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert cli.main(["kprune", "prune", "--data", "fashion_mnist", "--out", out]) == 2
    assert "--model is required" in capsys.readouterr().err
    model = str(tmp_path / "m.keras")
    tiny_model(model)
    assert cli.main(["kprune", "prune", "--model", model, "--out", out]) == 2
    assert "--data is required" in capsys.readouterr().err
    assert cli.main(["kprune", "prune", "--model", model, "--data", "nope.npz",
                     "--out", out]) == 2
    assert "neither one of fashion_mnist, mnist, digits nor an existing .npz" in capsys.readouterr().err


def test_lambda_model_needs_unsafe_load(tmp_path, capsys):
    path = str(tmp_path / "lam.keras")
    tiny_model(path, lam=True)
    data = tiny_npz(str(tmp_path / "d.npz"))
    rc = cli.main(["kprune", "prune", "--model", path, "--data", data,
                   "--out", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "safe mode" in err and "--unsafe_load" in err and "lam.keras" in err
    with pytest.raises(common.CommandError, match="--unsafe_load"):
        common.load_model(path)
    model = common.load_model(path, unsafe_load=True)
    assert "double" in [layer.name for layer in model.layers]
    # A plain model loads in safe mode, compiled as saved.
    plain = str(tmp_path / "plain.keras")
    tiny_model(plain)
    assert common.load_model(plain).compiled


def test_npz_data_sources(tmp_path):
    with pytest.raises(common.CommandError, match="lacks the array.*y_train"):
        common.load_data(tiny_npz(str(tmp_path / "a.npz"), drop=("y_train",)))
    with pytest.raises(common.CommandError, match="has x_val but not y_val"):
        path = str(tmp_path / "b.npz")
        np.savez(path, x_train=np.zeros((4, 2)), y_train=np.zeros(4), x_val=np.zeros((2, 2)))
        common.load_data(path)
    # No x_val: a seeded validation fraction is split off, disjoint from training.
    path = tiny_npz(str(tmp_path / "c.npz"))
    d1 = common.load_data(path, val_fraction=0.25, seed=3)
    d2 = common.load_data(path, val_fraction=0.25, seed=3)
    assert len(d1["train"][0]) == 120 and len(d1["val"][0]) == 40
    np.testing.assert_array_equal(d1["val"][0], d2["val"][0])
    train_rows = {r.tobytes() for r in d1["train"][0]}
    assert not any(r.tobytes() in train_rows for r in d1["val"][0])
    assert len(d1["test"][0]) == 40
    # Given x_val/y_val are used as they are.
    d3 = common.load_data(tiny_npz(str(tmp_path / "v.npz"), with_val=True))
    assert len(d3["train"][0]) == 160 and len(d3["val"][0]) == 40


def _listing(root):
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            found[os.path.relpath(p, root)] = os.path.getmtime(p)
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), root) + "/"] = None
    return found


def test_prune_end_to_end_writes_only_under_out(tmp_path, monkeypatch, capfd, caplog):
    caplog.set_level("INFO")
    cwd = tmp_path / "work"
    cwd.mkdir()
    tiny_npz(str(cwd / "data.npz"))
    model = tiny_model()
    with np.load(cwd / "data.npz") as d:
        model.fit(d["x_train"], d["y_train"], epochs=3, verbose=0)
    model.save(str(cwd / "model.keras"))
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    before = _listing(cwd)
    argv = ["kprune", "prune", "--model", "model.keras", "--data", "data.npz", "--out", "run",
            "--method", "ilp", "--epochs", "1", "--rounds", "2", "--target", "none",
            "--rate", "0.25", "--batch_size", "32", "--tensorboard", "--ignored_layers", "fc1"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        cli.run()  # the console-script entry point
    captured = capfd.readouterr()
    assert done.value.code == 0, captured.err[-3000:]
    after = _listing(cwd)
    new = {p for p in after if p not in before}
    assert all(p.startswith("run/") or p == "run/" for p in new), new
    assert {p: after[p] for p in before} == before  # inputs untouched
    out = cwd / "run"
    for name in ("pruned.keras", "result.json", "summary.txt", "history.png", "widths.png",
                 "checkpoints/state.json", "checkpoints/round_002.keras"):
        assert (out / name).is_file(), name
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(out / "tensorboard"))
    # Per-round absl log lines and Keras' per-epoch progress lines.
    assert "round 0 baseline: val_accuracy" in caplog.text
    assert "round 2 accepted:" in caplog.text
    assert captured.out.count("/step - accuracy:") == 2  # one line per retraining epoch
    record = json.loads((out / "result.json").read_text())
    assert [e["round"] for e in record["history"]] == [0, 1, 2]
    assert record["history"][0]["widths"]["fc1"] == record["final"]["widths"]["fc1"] == 16
    assert record["final"]["widths"]["conv1"] < 8
    assert set(record["test_accuracy"]) == {"before", "after"}
    pruned = keras.saving.load_model(str(out / "pruned.keras"))
    assert pruned.count_params() == record["final"]["params"]
    assert "before" in (out / "summary.txt").read_text()
    # The same command again resumes from the checkpoints: no new round is run.
    caplog.clear()
    assert cli.main(argv) == 0
    assert "round 1 accepted" not in caplog.text and "done in" in caplog.text
    assert json.loads((out / "result.json").read_text())["history"] == record["history"]


def test_export_tflite_and_micro(tmp_path, capsys):
    model = str(tmp_path / "m.keras")
    tiny_model(model)
    data = tiny_npz(str(tmp_path / "d.npz"))
    out = tmp_path / "fw"
    assert cli.main(["kprune", "export", "--model", model, "--format", "tflite",
                     "--quantization", "float32", "--out", str(out)]) == 0
    flat = (out / "m.tflite").read_bytes()
    assert flat[4:8] == b"TFL3"
    assert cli.main(["kprune", "export", "--model", model, "--out", str(out)]) == 2
    assert "needs calibration inputs" in capsys.readouterr().err
    assert cli.main(["kprune", "export", "--model", model, "--data", data, "--name", "tiny_net",
                     "--arena_size", "32000", "--out", str(out)]) == 0
    record = json.loads((out / "export.json").read_text())
    assert record["quantization"] == "int8" and record["arena_bytes"] == 32000
    header = (out / "tiny_net.h").read_text()
    assert "g_tiny_net_data" in header and "32000" in header
    assert (out / "tiny_net.tflite").read_bytes()[4:8] == b"TFL3"
    assert sorted(os.listdir(out)) == [".kprune-out.json", "export.json", "m.tflite",
                                       "tiny_net.cc", "tiny_net.h", "tiny_net.tflite"]


def test_bench_compares_two_models(tmp_path, capsys):
    import kprune

    original = tiny_model()
    pruned = kprune.remove_channels(original, {"conv1": [0, 1, 2, 3]})
    original.save(str(tmp_path / "orig.keras"))
    pruned.save(str(tmp_path / "pruned.keras"))
    data = tiny_npz(str(tmp_path / "d.npz"))
    rc = cli.main(["kprune", "bench", "--model", str(tmp_path / "pruned.keras"),
                   "--compare", str(tmp_path / "orig.keras"), "--data", data,
                   "--out", str(tmp_path / "b"), "--quantizations", "float32,int8",
                   "--latency_modes", "float32", "--runs", "5", "--warmup", "1",
                   "--rounds", "1", "--notflm", "--nomin_arena", "--eval_samples", "40"])
    assert rc == 0
    record = json.loads((tmp_path / "b" / "bench.json").read_text())
    text = json.dumps(record)
    assert str(original.count_params()) in text and str(pruned.count_params()) in text
    assert (tmp_path / "b" / "bench.txt").read_text().strip() == capsys.readouterr().out.strip()


def test_out_never_overwrites_inputs_or_foreign_files(tmp_path, capsys):
    """`--out` that holds the input model, files kprune does not write, or
    another run's results is refused before any work (unless --overwrite);
    the input itself can never be written over."""
    data = tiny_npz(str(tmp_path / "d.npz"))
    run = tmp_path / "run"
    run.mkdir()
    model = str(run / "pruned.keras")  # the model to prune IS the output name
    tiny_model(model)
    before = (run / "pruned.keras").read_bytes()
    args = ["kprune", "prune", "--model", model, "--data", data, "--out", str(run),
            "--method", "ilp", "--rounds", "1", "--target", "none", "--noplots"]
    for extra in ([], ["--overwrite"]):
        assert cli.main(args + extra) == 2
        assert "would be overwritten. Choose another --out" in capsys.readouterr().err
    assert (run / "pruned.keras").read_bytes() == before
    # Foreign files in --out.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    model2 = str(tmp_path / "m.keras")
    tiny_model(model2)
    args2 = ["kprune", "prune", "--model", model2, "--data", data, "--out", str(other),
             "--method", "ilp", "--rounds", "1", "--target", "none", "--noplots"]
    assert cli.main(args2) == 2
    assert "holds files this command does not write (notes.txt); pass --overwrite" in \
        capsys.readouterr().err
    assert sorted(os.listdir(other)) == ["notes.txt"]
    # An input inside --out.
    inside = tmp_path / "inside"
    inside.mkdir()
    tiny_model(str(inside / "model.keras"))
    assert cli.main(["kprune", "bench", "--model", str(inside / "model.keras"), "--out",
                     str(inside), "--data", data]) == 2
    assert "contains the input" in capsys.readouterr().err
    # Another command's results.
    exp = tmp_path / "exp"
    assert cli.main(["kprune", "export", "--model", model2, "--format", "tflite",
                     "--quantization", "float32", "--out", str(exp)]) == 0
    assert cli.main(["kprune", "bench", "--model", model2, "--out", str(exp),
                     "--data", data]) == 2
    assert "holds files this command does not write" in capsys.readouterr().err
    # --overwrite lets a run write next to foreign files (they stay).
    assert cli.main(args2 + ["--overwrite", "--batch_size", "32"]) == 0
    assert (other / "notes.txt").read_text() == "mine"
    assert (other / "pruned.keras").is_file()


def test_registries_drive_the_prune_flags(tmp_path, monkeypatch, capsys):
    """Methods (a third-party one named in KPRUNE_PLUGINS included), criteria
    and modes come from the registries."""
    from kprune.cli.main import main
    from kprune.methods.registry import unregister_method

    (tmp_path / "my_kprune_plugin.py").write_text(
        "from kprune.methods.registry import register_method\n"
        "@register_method('shrink_all')\n"
        "def shrink_all(run):\n"
        "    '''Removes half of every group, once.'''\n"
        "    return run.finish('done')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("KPRUNE_PLUGINS", "my_kprune_plugin")
    try:
        assert main(["kprune", "prune", "--help"]) == 0
        text = capsys.readouterr().out
        assert "shrink_all (Removes half of every group, once)" in text

        def block(flag):
            return text.split(f"\n  --{flag}")[1].split("\n  --")[0]

        assert "shrink_all" in block("method") and "complexity" in block("method")
        assert "latency" in block("mode") and "taylor" in block("criterion")
    finally:
        unregister_method("shrink_all")
    monkeypatch.setenv("KPRUNE_PLUGINS", "no_such_kprune_plugin")
    assert main(["kprune", "prune", "--help"]) == 2
    assert "cannot import the method plugin 'no_such_kprune_plugin'" in capsys.readouterr().err
