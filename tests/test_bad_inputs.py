"""The bad-input sweep (issue 21): wrong types, damaged / foreign / missing
files, NaN weights, labels that do not fit the loss, and CLI inputs are each
refused before any work, with an error that names the argument and the fix;
the CLI creates no --out for inputs it refuses."""

import os
import re
import zipfile

import numpy as np
import pytest

import kprune
import kprune.bench
import kprune.export
from kprune.cli import main as cli
from kprune.data import check_model_file, load_model_file
from tests.prune_support import small_cnn
from tests.test_arguments import _prune, _xy


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    model = small_cnn()
    good = str(d / "good.keras")
    model.save(good)
    raw = open(good, "rb").read()
    flat = kprune.export.to_tflite(model)
    paths = {"good": good, "dir": str(d / "a_dir"), "missing": str(d / "missing.keras")}
    os.mkdir(paths["dir"])
    for name, content in {"text.txt": b"not a model", "trunc.keras": raw[:len(raw) // 2],
                          "flat.keras": flat, "flat.tflite": flat, "empty.keras": b"",
                          "archive.h5": raw}.items():
        paths[name] = str(d / name)
        with open(paths[name], "wb") as f:
            f.write(content)
    paths["noconfig.keras"] = str(d / "noconfig.keras")
    with zipfile.ZipFile(paths["noconfig.keras"], "w") as z:
        z.writestr("metadata.json", "{}")
    return paths


FILE_CASES = [
    ("text.txt", ValueError, r"'.*text.txt' is not a model file.*pass a \.keras"),
    ("trunc.keras", ValueError, r"damaged or truncated \.keras archive.*model.save"),
    ("flat.keras", ValueError, r"is a TFLite flatbuffer, but model takes a \.keras or \.h5"),
    ("missing", FileNotFoundError, r"missing.keras': no such file"),
    ("empty.keras", ValueError, r"is empty \(0 bytes\)"),
    ("dir", ValueError, r"is a directory; pass a \.keras"),
    ("archive.h5", ValueError, r"holds a Keras \.keras archive but is named '\.h5'.*rename"),
    ("noconfig.keras", ValueError, r"damaged \.keras archive \(no config.json\)"),
]


@pytest.mark.parametrize("name, exc, pattern", FILE_CASES)
@pytest.mark.parametrize("fn", ["load_model_file", "to_micro", "measure"])
def test_bad_model_files(files, tmp_path, fn, name, exc, pattern):
    if fn == "measure" and name.startswith("flat"):
        pattern = pattern.replace(r"\.keras or \.h5", r"\.keras or \.h5 or \.tflite")
        if name == "flat.keras":  # the bench takes flatbuffers, named as such
            pattern = r"holds a TFLite flatbuffer but is named '\.keras'; rename"
    call = {"load_model_file": lambda p: load_model_file(p),
            "to_micro": lambda p: kprune.export.to_micro(p, "m", str(tmp_path / "fw")),
            "measure": lambda p: kprune.bench.measure(p, runs=0)}[fn]
    with pytest.raises(exc, match=pattern):
        call(files[name])
    assert not os.path.exists(tmp_path / "fw")


def test_model_file_kind_is_read_from_the_content(files):
    assert check_model_file(files["good"]) == ".keras"
    assert check_model_file(files["flat.tflite"], kinds=(".tflite",)) == ".tflite"
    with pytest.raises(TypeError, match=r"model must be a path to a \.keras or \.h5 file, got int"):
        check_model_file(3)


@pytest.mark.parametrize("call, exc, pattern", [
    (lambda: kprune.dependency_groups("m.keras"), TypeError,
     r"model must be a keras.Model, got str \(a file path\? load it first"),
    (lambda: kprune.dependency_groups(None), TypeError, r"model must be a keras.Model, got NoneType"),
    (lambda: kprune.remove_channels("m.keras", {"conv1": [0]}), TypeError, r"got str.*load_model"),
    (lambda: kprune.remove_channels(small_cnn(), {"conv1": [0, 2, 0]}), ValueError,
     r"channel index 0 is listed 2 times for layer 'conv1'.*pass each channel once"),
    (lambda: kprune.profile(3), TypeError, r"model must be a keras.Model, got int"),
    (lambda: kprune.export.to_tflite("m.keras"), TypeError, r"got str.*load_model\(path\)"),
    (lambda: kprune.export.to_tflite(b"TFL3"), TypeError, r"got bytes \(TFLite bytes\?"),
    (lambda: kprune.dependency_groups(small_cnn().layers[1]), TypeError,
     r"got Conv2D \(a layer, not a model: wrap it with keras.Model"),
    (lambda: kprune.bench.measure(small_cnn(), runs=-1), ValueError,
     r"runs must be an integer >= 0, got -1"),
    (lambda: kprune.bench.measure(small_cnn(), num_threads=0), ValueError,
     r"num_threads must be an integer >= 1, got 0"),
    (lambda: kprune.bench.measure(small_cnn(), rounds=1.5), TypeError,
     r"rounds must be an integer >= 1, got 1.5"),
    (lambda: kprune.bench.measure(small_cnn(), warmup=True), TypeError,
     r"warmup must be an integer >= 0, got True"),
], ids=["groups-path", "groups-none", "remove-path", "remove-repeat", "profile-int", "tflite-path",
        "tflite-bytes", "groups-layer", "bench-runs", "bench-threads", "bench-rounds",
        "bench-warmup"])
def test_public_api_wrong_types_and_ranges(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def _with_bad_weight(layer, value):
    model = small_cnn()
    w = model.get_layer(layer).get_weights()
    w[0].flat[3] = value
    model.get_layer(layer).set_weights(w)
    return model


@pytest.mark.parametrize("kw, exc, pattern", [
    (dict(model=_with_bad_weight("conv1", np.nan)), ValueError,
     r"model: weight 'conv1/kernel' of layer 'conv1' holds 1 NaN or infinite.*reload"),
    (dict(model=_with_bad_weight("fc1", np.inf)), ValueError, r"layer 'fc1' holds 1 NaN or inf"),
    (dict(train_data="labels"), TypeError, r"train_data: unsupported type str; pass \(x, y\)"),
    (dict(out_dir=3), TypeError, r"out_dir must be a directory path .* got 3 \(int\)"),
    (dict(tensorboard_dir=b"tb"), TypeError, r"tensorboard_dir must be a directory path"),
    (dict(on_round="print"), TypeError, r"on_round must be a callable on_round\(entry, model\)"),
    (dict(fit_fn=5), TypeError, r"fit_fn must be a callable fit_fn\(model, data, epochs\)"),
    (dict(model=b"TFL3"), TypeError, r"model must be a keras.Model, got bytes \(TFLite bytes"),
    (dict(model="pruned.keras"), TypeError, r"got str \(a file path\? load it first"),
], ids=["nan-weight", "inf-weight", "data-str", "out_dir", "tensorboard_dir", "on_round",
        "fit_fn", "model-bytes", "model-path"])
def test_prune_arguments_refused_before_training(kw, exc, pattern):
    with pytest.raises(exc, match=pattern):
        _prune(**kw)


def test_labels_that_do_not_fit_a_sparse_loss():
    x, y, _, _ = _xy()
    with pytest.raises(ValueError, match=r"labels have shape \(2,\) per sample.*sparse_"
                                         r"categorical_crossentropy.*shape \(N,\) with ids 0..9"):
        _prune(train_data=(x, np.stack([y, y], 1)))
    with pytest.raises(ValueError, match=r"labels are fractional \(e.g. \d\.5\).*astype\(int\)"):
        _prune(train_data=(x, y + 0.5))


@pytest.mark.parametrize("argv, pattern", [
    (["bench", "--model", "{text.txt}"], r"--model '.*text.txt' is not a model file"),
    (["bench", "--model", "{trunc.keras}"], r"--model .* damaged or truncated"),
    (["bench", "--model", "{good}", "--compare", "{empty.keras}"], r"--compare .* is empty"),
    (["bench", "--model", "{dir}"], r"--model .* is a directory"),
    (["prune", "--model", "{flat.tflite}", "--data", "digits"],
     r"--model .* is a TFLite flatbuffer, but --model takes a \.keras or \.h5 file"),
    (["prune", "--model", "{missing}", "--data", "digits"], r"--model .*: no such file"),
    (["export", "--model", "{text.txt}"], r"--model .* is not a model file"),
    (["export", "--model", "{archive.h5}"], r"rename it to end in \.keras"),
    (["bench", "--model", "{good}", "--data", "nope.npz"], r"--data 'nope.npz' is neither"),
    (["prune", "--model", "{good}", "--data", "{text.txt}"], r"--data .* is not a readable \.npz"),
], ids=["bench-txt", "bench-truncated", "bench-compare-empty", "bench-dir", "prune-tflite",
        "prune-missing", "export-txt", "export-misnamed", "bench-data", "prune-data"])
def test_cli_refuses_bad_model_files_before_creating_out(files, tmp_path, capsys, argv,
                                                         pattern):
    out = str(tmp_path / "out")
    argv = [files[a[1:-1]] if a.startswith("{") else a for a in argv]
    assert cli.main(["kprune"] + argv + ["--out", out]) == 2
    err = capsys.readouterr().err
    assert re.search(pattern, err), err
    assert not os.path.exists(out)
