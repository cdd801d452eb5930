"""One surgery check on one random graph, for the property test and for
`benchmarks/fuzz_surgery.py`: prune a random removal of the exact groups and
check that the pruned model equals the masked reference, that the input
model is unchanged, and that the pruned model survives a `.keras` round
trip.

    >>> outcome = check_seed(10)
    >>> outcome["status"] in ("ok", "vacuous", "no_removal")
    True
"""

import json
import os
import tempfile
import traceback

import keras
import numpy as np

from kprune.core.dependency import analyze
from kprune.core.surgery import remove_channels
from kprune.testing import (VacuousComparison, assert_surgery_equivalent,
                            random_removal)
from tests.random_graphs import random_model

#: statuses that are failures
FAILURES = ("mismatch", "crash")


def _inputs(model, rng):
    xs = [rng.integers(0, 10, size=(2,) + tuple(t.shape[1:])).astype("int32")
          if "int" in str(t.dtype) else
          rng.normal(size=(2,) + tuple(t.shape[1:])).astype("float32")
          for t in model.inputs]  # token ids for Embedding inputs
    return xs[0] if len(xs) == 1 else xs


def _outputs(y):
    y = y if isinstance(y, (list, tuple)) else [y]
    return [np.asarray(v) for v in y]


def check_model(model, seed: int) -> dict:
    """Checks one model; returns {'status', 'removal', 'groups', ...}.

    status: 'ok'; 'vacuous' (exact, but masking left the outputs unchanged);
    'no_removal' (no exact prunable group); 'mismatch' or 'crash' (failures,
    with 'error' and 'traceback').
    """
    rng = np.random.default_rng(seed)
    result = {"seed": seed, "removal": None}
    weights = [np.array(w) for w in model.get_weights()]
    config = json.dumps(model.get_config(), sort_keys=True, default=str)
    try:
        analysis = analyze(model)
        result["groups"] = len(analysis.groups)
        fraction = float(rng.uniform(0.2, 0.7))
        removal = random_removal(model, fraction=fraction, seed=seed,
                                 exact_only=True, analysis=analysis)
        result["removal"] = removal
        if not removal:
            result["status"] = "no_removal"
            return result
        inputs = _inputs(model, rng)
        pruned = remove_channels(model, removal, analysis=analysis)
        status = "ok"
        try:
            assert_surgery_equivalent(model, removal, inputs=inputs,
                                      pruned=pruned)
        except VacuousComparison:
            status = "vacuous"
        assert pruned.count_params() < model.count_params(), \
            "pruning removed no parameter"
        # The input model is unchanged.
        assert json.dumps(model.get_config(), sort_keys=True, default=str) == \
            config, "the input model's config changed"
        for before, after in zip(weights, model.get_weights()):
            np.testing.assert_array_equal(before, after,
                                          "the input model's weights changed")
        # The .keras round trip.
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "pruned.keras")
            pruned.save(path)
            loaded = keras.saving.load_model(path)
            for a, b in zip(_outputs(pruned(inputs, training=False)),
                            _outputs(loaded(inputs, training=False))):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6,
                                           err_msg=".keras round trip differs")
        result["status"] = status
    except AssertionError as e:
        result.update(status="mismatch", error=str(e)[:2000],
                      traceback=traceback.format_exc())
    except Exception as e:  # noqa: BLE001 - a crash is a finding
        result.update(status="crash", error=f"{type(e).__name__}: {e}"[:2000],
                      traceback=traceback.format_exc())
    return result


def check_seed(seed: int, failure_dir=None) -> dict:
    """Builds `random_model(seed)`, checks it, and writes a failure's model
    (config and weights, `model.keras`) and `failure.json` (seed, removal,
    error) under `failure_dir/seed_<seed>/`."""
    try:
        model = random_model(seed)
    except Exception as e:  # noqa: BLE001 - the generator's own bug
        return {"seed": seed, "status": "generator_error",
                "error": f"{type(e).__name__}: {e}"[:2000]}
    result = check_model(model, seed)
    if failure_dir and result["status"] in FAILURES:
        where = os.path.join(failure_dir, f"seed_{seed}")
        os.makedirs(where, exist_ok=True)
        try:
            model.save(os.path.join(where, "model.keras"))
        except Exception as e:  # noqa: BLE001
            result["save_error"] = str(e)
        with open(os.path.join(where, "failure.json"), "w") as f:
            json.dump(result, f, indent=1, default=str)
    return result
