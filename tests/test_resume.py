"""Resume after kill -9: a run killed after round 1 and restarted with the
same out_dir reaches the same result as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.path.insert(0, {repo!r})
    import numpy as np, keras, tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    from kprune.prune import prune
    from tests.prune_support import digits, small_cnn
    (x, y), (xv, yv), _ = digits()
    x, y = x[:600], y[:600]
    model = small_cnn(seed=0)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, shuffle=False)
    res = prune(model, "{method}", train_data=(x, y), val_data=(xv, yv), epochs=1,
                rounds=4, target="none", out_dir=sys.argv[1], seed=7, rate=0.2,
                batch_size=32, calibration_samples=300)
    with open(sys.argv[2], "w") as f:
        json.dump({{"history": res.history, "final_round": res.final_round,
                   "weights_sum": [float(np.abs(w).sum()) for w in res.model.get_weights()]}}, f)
""")


def _run(script, out_dir, result):
    return subprocess.Popen([sys.executable, script, str(out_dir), str(result)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _committed_rounds(out_dir):
    p = os.path.join(out_dir, "state.json")
    try:
        with open(p) as f:
            return len(json.load(f)["history"]) - 1
    except (OSError, ValueError):
        return -1


def _strip(history):
    return [{k: v for k, v in e.items() if k not in ("time_s", "phase_s")} for e in history]


@pytest.mark.parametrize("method", ["iap"])
def test_resume_after_kill_matches_uninterrupted_run(tmp_path, method):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(repo=REPO, method=method))
    killed_dir, ref_dir = tmp_path / "killed", tmp_path / "ref"
    # The reference runs while the other one is started and killed.
    ref = _run(script, ref_dir, tmp_path / "ref.json")
    victim = _run(script, killed_dir, tmp_path / "killed.json")
    deadline = time.time() + 240
    while _committed_rounds(killed_dir) < 1:
        assert victim.poll() is None, victim.stdout.read().decode()[-3000:]
        assert time.time() < deadline, "round 1 never completed"
        time.sleep(0.05)
    assert victim.poll() is None, "the run finished before it could be killed"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed.json").exists()
    done_at_kill = _committed_rounds(killed_dir)
    assert 1 <= done_at_kill < 4
    resumed = _run(script, killed_dir, tmp_path / "killed.json")
    out = resumed.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 0, out[-3000:]
    ref_out = ref.communicate(timeout=300)[0].decode()
    assert ref.returncode == 0, ref_out[-3000:]
    got = json.loads((tmp_path / "killed.json").read_text())
    want = json.loads((tmp_path / "ref.json").read_text())
    assert len(got["history"]) == 5  # baseline + 4 rounds
    assert _strip(got["history"]) == _strip(want["history"])
    assert got["final_round"] == want["final_round"]
    np.testing.assert_allclose(got["weights_sum"], want["weights_sum"], rtol=0, atol=0)
    # The round files of every committed round exist and are complete.
    for e in got["history"]:
        assert (killed_dir / f"round_{e['round']:03d}.keras").exists()
    assert not [n for n in os.listdir(killed_dir) if n.startswith(".tmp_")]


def test_finished_out_dir_returns_without_training(tmp_path):
    from tests.prune_support import digits, trained_cnn

    from kprune.prune import prune

    (x, y), (xv, yv), _ = digits()
    calls = []

    def fit_fn(model, data, epochs):
        calls.append(epochs)
        model.fit(data[0], data[1], epochs=epochs, verbose=0)

    kwargs = dict(train_data=(x, y), val_data=(xv, yv), epochs=1, rounds=2, target="none",
                  out_dir=tmp_path, seed=0, fit_fn=fit_fn, rate=0.2)
    first = prune(trained_cnn(), "ilp", **kwargs)
    n = len(calls)
    again = prune(trained_cnn(), "ilp", **kwargs)
    assert len(calls) == n  # nothing retrained
    assert _strip(again.history) == _strip(first.history)
    assert again.model.count_params() == first.model.count_params()
    with pytest.raises(ValueError, match="holds another run.*settings differ"):
        prune(trained_cnn(), "ilp", **dict(kwargs, rate=0.3))
