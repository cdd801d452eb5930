"""Device budgets benchmark (issue 12): TFLite-Micro arena estimate vs the
runtime, arena budgets as pruning targets, and latency on both runtimes.

Sections (``--sections``, default all):

* ``estimate``: `kprune.bench.arena_estimate` against TFLite-Micro's recording
  allocator (allocated bytes) and the smallest working arena (binary search,
  1-byte resolution) for LeNet-5, DS-CNN, ResNet-20 and MobileNetV2 (0.35, 96),
  unpruned and L1-pruned at 30/50/70 % (`benchmarks/edge.py`'s pruning).
* ``target``: `plan_arena_pruning` (complexity draws, memory mode) at arena
  budgets, the result measured on the runtime; LeNet-5 and ResNet-20 also
  through ``kprune.prune(..., 'complexity', target_arena_bytes=N)``, trained
  on a Fashion-MNIST subset and evaluated on real test images.
* ``latency_target``: `plan_latency_pruning` to half the measured latency of
  ResNet-20 and MobileNetV2 on TFLite-Micro's reference kernels
  (``--latency-runtime litert``: 0.7x on LiteRT), verified interleaved.
* ``latency_target_litert`` (only when named): `plan_latency_pruning` to 0.7x
  of MobileNetV2 (0.35, 96)'s LiteRT int8 latency with latency staircases,
  verified interleaved with the original (3 x 600 invokes) and drift-corrected.
* ``mac_vs_latency`` (only when named): ResNet-20 on Fashion-MNIST pruned by
  the complexity method to 50 % of its MACs and to the same measured latency
  (mode='latency'), trained from scratch: speedup per MAC reduction, accuracy.
* ``fit_tail`` (only when named): refits the arena tail model's constants
  from one-op probe models measured with the recording allocator.
* ``latency``: LiteRT int8 (XNNPACK, 1 thread) and TFLite-Micro reference
  kernels, each timed interleaved, speedup / MAC reduction of the pruned models.

Usage:
    python benchmarks/edge_arena.py                       # about 25 min on 2 shared cores
    python benchmarks/edge_arena.py --sections estimate   # a few minutes

Writes benchmarks/results/edge_arena.json and edge_arena.md (atomically).
"""

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..")))
sys.path.insert(0, HERE)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kprune  # noqa: E402
import kprune.zoo  # noqa: E402
from kprune.bench import arena_estimate, litert, tflm  # noqa: E402
from kprune.methods.checkpoint import atomic_write_text  # noqa: E402
from kprune.export import to_tflite  # noqa: E402

RESULTS = os.path.join(HERE, "results")
FRACTIONS = (0.3, 0.5, 0.7)


def _mnv2():
    return keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3),
                                          weights=None, classes=10)


FAMILIES = {
    "lenet5": (kprune.zoo.lenet5, (28, 28, 1)),
    "ds_cnn": (kprune.zoo.ds_cnn, (49, 10, 1)),
    "resnet20": (kprune.zoo.resnet20, (32, 32, 3)),
    "mobilenetv2-0.35-96": (_mnv2, (96, 96, 3)),
}


def family(name):
    import edge

    build, shape = FAMILIES[name]
    keras.utils.set_random_seed(0)
    model = build()
    x = np.random.default_rng(0).random((64,) + shape, dtype=np.float32)
    edge.recalibrate_batchnorm(model, x)
    analysis = kprune.analyze(model)
    out = [(name, model)]
    for f in FRACTIONS:
        out.append((f"{name}-l1-{int(f * 100)}",
                    kprune.remove_channels(model, edge.l1_removal(model, f, analysis), analysis)))
    return out, x[:32]


def section_estimate(log):
    rows, flats = [], {}
    for fam in FAMILIES:
        models, calib = family(fam)
        for name, m in models:
            flat = to_tflite(m, "int8", representative_data=calib)
            flats[name] = (flat, m)
            t = time.perf_counter()
            est = arena_estimate(flat, detail=True)
            est_s = time.perf_counter() - t
            rep = tflm.arena_report(flat)
            smallest = tflm.min_arena_bytes(flat, resolution=1)
            rows.append({"model": name, "estimate": est.total_bytes, "head": est.head_bytes,
                         "tail": est.tail_bytes, "measured": rep.total_bytes,
                         "measured_head": rep.head_bytes, "smallest_working": smallest,
                         "err_measured": est.total_bytes / rep.total_bytes - 1,
                         "err_smallest": est.total_bytes / smallest - 1,
                         "estimate_ms": est_s * 1e3})
            log(f"{name}: est {est.total_bytes} meas {rep.total_bytes} min {smallest}")
    return rows, flats


def section_latency(flats, log, runs_litert=300, runs_tflm=10):
    rows = []
    for fam in FAMILIES:
        names = [n for n in flats if n == fam or n.startswith(fam + "-l1-")]
        fl = [flats[n][0] for n in names]
        lit = litert.interleaved_latency(fl, num_threads=1, warmup=20, runs=runs_litert,
                                         rounds=5)
        mic = tflm.interleaved_latency(fl, runs=runs_tflm, warmup=1)
        macs = [kprune.profile(flats[n][1]).macs for n in names]
        for k, n in enumerate(names):
            mac_red = macs[0] / macs[k]
            s_l, s_m = lit[0].median_ms / lit[k].median_ms, mic[0].median_ms / mic[k].median_ms
            rows.append({"model": n, "macs": int(macs[k]), "mac_reduction": mac_red,
                         "litert_int8_ms": lit[k].median_ms, "tflm_ms": mic[k].median_ms,
                         "litert_speedup": s_l, "tflm_speedup": s_m,
                         "litert_speedup_per_mac": s_l / mac_red,
                         "tflm_speedup_per_mac": s_m / mac_red})
            log(f"{n}: MACx{mac_red:.2f} litert {s_l:.2f} tflm {s_m:.2f}")
    return rows


def section_target(log, epochs, train_n, rows=None, on_row=lambda: None):
    from kprune.datasets import load_fashion_mnist
    from kprune.methods.complexity import plan_arena_pruning

    import edge

    rows = [] if rows is None else rows
    done = {(r["model"], r["target"]) for r in rows}
    plan_cases = [("resnet20", 32 * 1024), ("ds_cnn", 16 * 1024),
                  ("mobilenetv2-0.35-96", 96 * 1024)]
    for fam, budget in plan_cases:
        if (fam, budget) in done:
            continue
        build, shape = FAMILIES[fam]
        keras.utils.set_random_seed(0)
        model = build()
        # Random weights: BN statistics from one batch, or int8 softmax degenerates.
        edge.recalibrate_batchnorm(model, np.random.default_rng(0).random(
            (64,) + shape, dtype=np.float32))
        t = time.time()
        small, steps = plan_arena_pruning(model, budget, reinit=False)
        rows.append({"model": fam, "how": "plan_arena_pruning (memory mode, seed 0)",
                     "target": budget, "achieved": steps[-1]["arena_measured"],
                     "start": steps[0]["arena"], "steps": len(steps) - 1,
                     "exact_checks": sum("arena" in s for s in steps[1:]),
                     "time_s": time.time() - t, "accuracy": None})
        log(f"{fam} -> {budget}: {rows[-1]}")
        on_row()
    (x, y), (xt, yt) = load_fashion_mnist()
    x, y, xv, yv = x[:train_n], y[:train_n], x[50000:52000], y[50000:52000]
    xt, yt = xt[:2000], yt[:2000]
    for fam, budget, build in (("lenet5", 6 * 1024, kprune.zoo.lenet5),
                               ("resnet20-fmnist", 24 * 1024,
                                lambda: kprune.zoo.resnet20(input_shape=(28, 28, 1)))):
        if (fam, budget) in done:
            continue
        keras.utils.set_random_seed(0)
        model = build()
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        t = time.time()
        model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
        base_acc = float(model.evaluate(xt, yt, verbose=0)[1])
        base_arena = tflm.tflm_arena_bytes(to_tflite(model, "int8",
                                                     representative_data=x[:200]))
        r = kprune.prune(model, "complexity", mode="memory", target_arena_bytes=budget,
                         train_data=(x, y), val_data=(xv, yv), epochs=epochs,
                         batch_size=128, seed=0)
        acc = float(r.model.evaluate(xt, yt, verbose=0)[1])
        rows.append({"model": fam, "how": f"kprune.prune complexity memory mode, trained "
                                          f"from scratch {epochs} epochs on {train_n} images",
                     "target": budget, "achieved": r.final["arena_measured"],
                     "start": base_arena, "steps": len(r.final["steps"]) - 1,
                     "time_s": time.time() - t, "accuracy": acc,
                     "baseline_accuracy": base_acc})
        log(f"{fam} -> {budget}: {rows[-1]}")
        on_row()
    return rows


def section_latency_target(log, runtime="tflm", families=("resnet20", "mobilenetv2-0.35-96")):
    """plan_latency_pruning to a fraction of the measured latency on `runtime`:
    'tflm' (TFLite-Micro reference kernels, median of 3 invokes per check;
    target 0.5x) or 'litert' (LiteRT int8, 1 thread; target 0.7x: ResNet-20's
    fastest reachable model is ~0.54x there). Verified by timing the result
    interleaved with the original."""
    import edge
    from kprune.methods.complexity import plan_latency_pruning
    from kprune.methods.device_budget import flatbuffer_for

    rows = []
    for fam in families:
        build, shape = FAMILIES[fam]
        keras.utils.set_random_seed(0)
        model = build()
        edge.recalibrate_batchnorm(model, np.random.default_rng(0).random(
            (64,) + shape, dtype=np.float32))
        base_flat = flatbuffer_for(model)
        if runtime == "tflm":
            fraction, name = 0.5, "TFLite-Micro reference kernels"

            def latency_fn(flat):
                return tflm.latency(flat, runs=3, warmup=1).median_ms / 1e3

            def verify(flats):
                return tflm.interleaved_latency(flats, runs=15)
            base_ms = tflm.latency(base_flat, runs=5).median_ms
        else:
            fraction, name, latency_fn = 0.7, "LiteRT int8, 1 thread", None

            def verify(flats):
                return litert.interleaved_latency(flats, runs=600, rounds=6)
            base_ms = litert.interleaved_latency([base_flat], runs=200, rounds=2)[0].median_ms
        target = fraction * base_ms
        t = time.time()
        fast, steps = plan_latency_pruning(model, target, latency_fn=latency_fn,
                                           reinit=False, repeats=1 if latency_fn else 3)
        plan_s = time.time() - t
        b, a = verify([base_flat, flatbuffer_for(fast)])
        macs0, macs1 = kprune.profile(model).macs, kprune.profile(fast).macs
        speedup = b.median_ms / a.median_ms
        rows.append({"model": fam, "runtime": name, "target_ms": target,
                     "base_ms_at_plan": base_ms, "achieved_ms": a.median_ms,
                     "base_ms_verify": b.median_ms,
                     "achieved_over_target": a.median_ms / target,
                     "speedup": speedup, "mac_reduction": macs0 / macs1,
                     "speedup_per_mac": speedup / (macs0 / macs1),
                     "steps": len(steps) - 1, "plan_time_s": plan_s})
        log(f"latency target {fam}: {rows[-1]}")
    return rows


def _interleaved_spread(flats, repeats=3, runs=600, rounds=6):
    """LiteRT int8 (1 thread) medians of `repeats` separate interleaved
    measurements: per model the median of the medians and their min / max."""
    meds = [[s.median_ms for s in litert.interleaved_latency(flats, num_threads=1, warmup=20,
                                                             runs=runs, rounds=rounds)]
            for _ in range(repeats)]
    per_model = list(zip(*meds))
    return [{"median_ms": float(np.median(m)), "min_ms": float(min(m)),
             "max_ms": float(max(m)), "medians_ms": [float(v) for v in m]}
            for m in per_model]


def _planner_base(family_entry):
    """(model, its int8 flatbuffer, its LiteRT median ms) of a `FAMILIES`
    entry (builder, input shape), seeded, BatchNorm statistics from noise."""
    import edge
    from kprune.methods.device_budget import flatbuffer_for

    build, shape = family_entry
    keras.utils.set_random_seed(0)
    model = build()
    edge.recalibrate_batchnorm(model, np.random.default_rng(0).random(
        (64,) + shape, dtype=np.float32))
    base_flat = flatbuffer_for(model)
    base_ms = _interleaved_spread([base_flat], repeats=1, runs=300, rounds=3)[0]["median_ms"]
    return model, base_flat, base_ms


def section_latency_target_litert(log, family_name="mobilenetv2-0.35-96", fraction=0.7,
                                  probes=4, rewidth=True):
    """plan_latency_pruning on LiteRT int8 (1 thread, the default latency_fn)
    to `fraction` of the model's latency, with latency staircases (sweep of
    0.75/0.5/0.25 of each group, `probes` prices per group). The result is
    re-measured interleaved with the original (3 x 600 invokes each); drift
    between planning and verification is removed by scaling the achieved
    latency with the original's latency at planning / at verification.
    `rewidth`: candidates priced on the re-widthed original flatbuffer (the
    default) or converted one by one (``--no-rewidth``, the planner before)."""
    from kprune.methods.complexity import plan_latency_pruning
    from kprune.methods.device_budget import flatbuffer_for

    from qat import mobilenet_v2_style

    model, base_flat, base_ms = _planner_base(
        {**FAMILIES, "mobilenetv2-style-32": (mobilenet_v2_style, (32, 32, 1))}[family_name])
    target = fraction * base_ms
    t = time.time()
    fast, steps = plan_latency_pruning(model, target, reinit=False, repeats=3,
                                       staircase_probes=probes, rewidth=rewidth)
    plan_s = time.time() - t
    b, a = _interleaved_spread([base_flat, flatbuffer_for(fast)])
    macs0, macs1 = kprune.profile(model).macs, kprune.profile(fast).macs
    corrected = a["median_ms"] * base_ms / b["median_ms"]
    planner = steps[0].get("planner", {})
    row = {"model": family_name + ("" if rewidth else " (every candidate converted)"),
           "runtime": "LiteRT int8, 1 thread", "fraction": fraction,
           "conversions": planner.get("conversions"), "pricings": planner.get("pricings"),
           "planner": planner,
           "base_ms_at_plan": base_ms, "target_ms": target,
           "planner_ms": steps[-1]["latency_ms"], "base": b, "achieved": a,
           "achieved_over_target": a["median_ms"] / target,
           "achieved_drift_corrected_ms": corrected,
           "corrected_over_target": corrected / target,
           "speedup": b["median_ms"] / a["median_ms"], "mac_reduction": macs0 / macs1,
           "steps": len(steps) - 1, "on_step": sum(bool(s.get("on_step")) for s in steps[1:]),
           "step_widths": steps[0].get("step_widths"), "plan_time_s": plan_s,
           "staircase_probes": probes}
    row["speedup_per_mac"] = row["speedup"] / row["mac_reduction"]
    log(f"latency target {family_name}: { {k: v for k, v in row.items() if k != 'step_widths'} }")
    return row


def section_planner_speed(log, family_name="lenet5", fraction=0.7, probes=4, reps=1):
    """`plan_latency_pruning` on LiteRT int8 with and without re-widthing
    (``rewidth=False``: every candidate converted, the planner before), run
    alternately in one process (`reps` of each): plan time, conversions, and
    the result's latency over the target, timed interleaved with the original
    (3 runs of 600 invokes, median of medians)."""
    from kprune.methods.complexity import plan_latency_pruning
    from kprune.methods.device_budget import flatbuffer_for

    model, base_flat, base_ms = _planner_base(FAMILIES[family_name])
    target = fraction * base_ms
    rows = []
    for rep in range(reps):
        for rewidth in (True, False):
            t = time.time()
            fast, steps = plan_latency_pruning(model, target, reinit=False, repeats=3,
                                               staircase_probes=probes, rewidth=rewidth)
            plan_s = time.time() - t
            b, a = _interleaved_spread([base_flat, flatbuffer_for(fast)])
            rows.append({"model": family_name, "rewidth": rewidth, "rep": rep,
                         "target_ms": target, "base": b, "achieved": a,
                         "achieved_over_target": a["median_ms"] / target,
                         "drift_corrected_over_target":
                             a["median_ms"] * base_ms / b["median_ms"] / target,
                         "plan_time_s": plan_s, "planner": steps[0].get("planner", {}),
                         "steps": len(steps) - 1, "floor_ms": b.get("floor_ms")})
            log(f"planner_speed {family_name} rewidth={rewidth}: plan {plan_s:.0f} s, "
                f"{rows[-1]['planner']}, achieved/target {rows[-1]['achieved_over_target']:.3f}")
    return rows


def section_mac_vs_latency(log, epochs=2, train_n=12000, mac_target=0.5, probes=4):
    """ResNet-20 on Fashion-MNIST (28x28x1): complexity-driven planning with a
    MAC target (`plan_complexity_pruning`, 'flops', target=`mac_target`) and
    with a latency target equal to the MAC-pruned model's measured LiteRT
    latency (`plan_latency_pruning`, staircases with `probes` prices per
    group), both trained from scratch like the unpruned baseline: speedup per
    MAC reduction and test accuracy of each, latencies timed interleaved
    (3 x 600 invokes)."""
    from kprune.datasets import fashion_mnist_slice
    from kprune.methods.device_budget import flatbuffer_for

    (x, y), (xt, yt) = fashion_mnist_slice(train_n, 2000)
    calib = x[:200]

    def flat(m):
        return flatbuffer_for(m, representative_data=calib)

    def fresh():
        keras.utils.set_random_seed(0)
        m = kprune.zoo.resnet20(input_shape=(28, 28, 1))
        m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return m

    t = time.time()
    base = fresh()
    base.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    base_acc = float(base.evaluate(xt, yt, verbose=0)[1])
    log(f"baseline trained: {base_acc:.4f} ({time.time() - t:.0f} s)")
    from kprune.methods.complexity import plan_complexity_pruning, plan_latency_pruning

    def train(arch):
        arch.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        arch.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
        return arch

    mac_arch, _ = plan_complexity_pruning(fresh(), "flops", target=mac_target, seed=0)
    mac_model = train(mac_arch)
    mac_acc = float(mac_model.evaluate(xt, yt, verbose=0)[1])
    b, m = _interleaved_spread([flat(base), flat(mac_model)])
    target_ms = m["median_ms"]  # the MAC-pruned model's latency, measured interleaved
    log(f"MAC-targeted: acc {mac_acc:.4f}, {m['median_ms']:.4f} ms vs {b['median_ms']:.4f}")
    t = time.time()
    lat_arch, _ = plan_latency_pruning(fresh(), target_ms, seed=0, staircase_probes=probes)
    lat_model = train(lat_arch)
    lat_plan_s = time.time() - t
    lat_acc = float(lat_model.evaluate(xt, yt, verbose=0)[1])
    b, m, l = _interleaved_spread([flat(base), flat(mac_model), flat(lat_model)])
    macs = [kprune.profile(mm).macs for mm in (base, mac_model, lat_model)]
    rows = []
    for how, stats, acc, mc in (("unpruned", b, base_acc, macs[0]),
                                (f"MAC target (plan_complexity_pruning 'flops', "
                                 f"target={mac_target})", m, mac_acc, macs[1]),
                                (f"latency target (plan_latency_pruning, target_latency_ms="
                                 f"{target_ms:.4f})", l, lat_acc, macs[2])):
        speed = b["median_ms"] / stats["median_ms"]
        rows.append({"model": "resnet20-fmnist", "how": how, "macs": int(mc),
                     "mac_reduction": macs[0] / mc, "latency": stats, "speedup": speed,
                     "speedup_per_mac": speed / (macs[0] / mc), "accuracy": acc,
                     "accuracy_loss": base_acc - acc})
        log(f"{how}: {rows[-1]}")
    rows[-1]["plan_and_train_time_s"] = lat_plan_s
    return rows

def section_fit_tail(log):
    """Refits `kprune.runtime.arena`'s tail model: one-op probe models measured
    with the recording allocator, least squares for the constant and the
    per-op-type bytes (what remains after tensors, nodes and per-channel data)."""
    from kprune.bench import arena, flatbuffer

    L = keras.layers

    def conv(n=4):
        return L.Conv2D(n, 3, padding="same")

    dw = lambda: L.DepthwiseConv2D(3, padding="same")  # noqa: E731
    probes = {
        "conv1": lambda i: conv()(i),
        "conv3": lambda i: conv()(conv()(conv()(i))),
        "conv1_dw1": lambda i: dw()(conv()(i)),
        "conv1_dw3": lambda i: dw()(dw()(dw()(conv()(i)))),
        "conv1_mp2": lambda i: L.MaxPooling2D(2)(L.MaxPooling2D(2)(conv()(i))),
        "conv1_ap2": lambda i: L.AveragePooling2D(2)(L.AveragePooling2D(2)(conv()(i))),
        "conv1_fc1": lambda i: L.Dense(5)(L.Flatten()(conv()(i))),
        "conv1_fc3": lambda i: L.Dense(5)(L.Dense(5)(L.Dense(5)(L.Flatten()(conv()(i))))),
        "conv1_fc1_sm": lambda i: L.Dense(5, activation="softmax")(L.Flatten()(conv()(i))),
        "conv2_add1": lambda i: L.Add()([conv()(i), conv()(i)]),
        "conv3_add2": lambda i: L.Add()([L.Add()([conv()(i), conv()(i)]), conv()(i)]),
        "conv1_gap": lambda i: L.GlobalAveragePooling2D()(conv()(i)),
        "conv1_gap_fc": lambda i: L.Dense(5)(L.GlobalAveragePooling2D()(conv()(i))),
        "conv2_cat": lambda i: L.Concatenate()([conv()(i), conv()(i)]),
        "conv2_mul": lambda i: L.Multiply()([conv()(i), conv()(i)]),
        "conv1_sig": lambda i: L.Activation("sigmoid")(conv()(i)),
        "conv1_hs": lambda i: L.Activation("hard_swish")(conv()(i)),
        "conv1_lrelu": lambda i: L.LeakyReLU(0.1)(conv()(i)),
        "conv1_tanh": lambda i: L.Activation("tanh")(conv()(i)),
        "conv1_rs_fc": lambda i: L.Dense(5)(L.Reshape((256,))(conv()(i))),
    }
    rows, names, ys = [], [], []
    graphs = []
    for name, body in probes.items():
        keras.utils.set_random_seed(0)
        inp = keras.Input((8, 8, 3))
        model = keras.Model(inp, body(inp))
        x = np.random.default_rng(0).random((16, 8, 8, 3), dtype=np.float32)
        flat = to_tflite(model, "int8", representative_data=x)
        graphs.append((name, flatbuffer.parse(flat), tflm.arena_report(flat).tail_bytes))
    types = sorted({op.name for _, g, _ in graphs for op in g.operators})
    saved = dict(arena.TAIL_PER_OP), arena.TAIL_CONSTANT
    for name, g, tail in graphs:
        arena.TAIL_PER_OP.clear()
        arena.TAIL_PER_OP.update({t: 0 for t in types})
        arena.TAIL_CONSTANT = 0
        known = arena.tail_bytes(g)[0]  # tensors, nodes, per-channel arrays (aligned)
        counts = [sum(op.name == t for op in g.operators) for t in types]
        rows.append([1] + counts)
        ys.append(tail - known)
        names.append(name)
    arena.TAIL_PER_OP.clear()
    arena.TAIL_PER_OP.update(saved[0])
    arena.TAIL_CONSTANT = saved[1]
    sol = np.linalg.lstsq(np.array(rows, float), np.array(ys, float), rcond=None)[0]
    fit = {"TAIL_CONSTANT": round(float(sol[0]))}
    fit.update({t: round(float(v)) for t, v in zip(types, sol[1:])})
    log(f"tail fit: {fit}")
    return fit


#: The commands that produced the sections recorded before commands were kept per section.
EARLIER_COMMAND = ("python benchmarks/edge_arena.py --sections estimate,latency; python "
                   "benchmarks/edge_arena.py --sections target; python benchmarks/edge_arena.py "
                   "--sections latency_target (one model per process)")


def _litert_rows(res):
    """The latency_target_litert rows (one per model; older files hold one dict)."""
    rows = res.get("latency_target_litert")
    if not rows:
        return []
    return [rows] if isinstance(rows, dict) else list(rows)


def markdown(res, command):
    commands = res.get("commands", {})
    earlier = [k for k in res if k not in commands and k != "commands"]
    lines = [f"- {', '.join(earlier)}: `{EARLIER_COMMAND}`"] if earlier else []
    lines += [f"- {k}: `{v}`" for k, v in commands.items()]
    out = ["Commands (per section):", "", *lines, "", f"Host: {platform.machine()}, {os.cpu_count()} cores "
           "(shared); tflite-micro reference kernels on the host; LiteRT XNNPACK 1 thread.", ""]
    if "estimate" in res:
        out += ["### TFLite-Micro arena: `arena_estimate` vs the runtime", "",
                "| model | estimate (B) | recording allocator (B) | smallest working arena (B) "
                "| error vs allocated | error vs smallest |", "|---|---:|---:|---:|---:|---:|"]
        for r in res["estimate"]:
            out.append(f"| {r['model']} | {r['estimate']:,} | {r['measured']:,} | "
                       f"{r['smallest_working']:,} | {r['err_measured'] * 100:+.2f} % | "
                       f"{r['err_smallest'] * 100:+.2f} % |")
        worst = max(max(abs(r["err_measured"]), abs(r["err_smallest"])) for r in res["estimate"])
        out += ["", f"Worst error: {worst * 100:.2f} %.", ""]
    if "target" in res:
        out += ["### Arena budget as a pruning target", "",
                "| model | how | start (B) | target (B) | achieved, measured (B) | achieved / "
                "target | top-1 (baseline) |", "|---|---|---:|---:|---:|---:|---|"]
        for r in res["target"]:
            acc = ("-" if r["accuracy"] is None else
                   f"{r['accuracy'] * 100:.1f} % ({r['baseline_accuracy'] * 100:.1f} %)")
            out.append(f"| {r['model']} | {r['how']} | {r['start']:,} | {r['target']:,} | "
                       f"{r['achieved']:,} | {r['achieved'] / r['target']:.3f} | {acc} |")
        out.append("")
    if "latency_target" in res:
        out += ["### Latency as a pruning target", "",
                "Achieved = median of invokes interleaved with the original after planning "
                "(TFLite-Micro: 15 runs each).", "",
                "| model | runtime (latency_fn) | original ms | target ms | achieved ms | "
                "achieved / target | speedup | MAC reduction | speedup / MAC red. | plan time |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["latency_target"]:
            out.append(f"| {r['model']} | {r.get('runtime', 'LiteRT int8, 1 thread')} | "
                       f"{r['base_ms_verify']:.3f} | {r['target_ms']:.3f} | "
                       f"{r['achieved_ms']:.3f} | {r['achieved_over_target']:.3f} | "
                       f"{r['speedup']:.2f}x | {r['mac_reduction']:.2f}x | "
                       f"{r['speedup_per_mac']:.2f} | {r['plan_time_s']:.0f} s |")
        out.append("")
    rows = _litert_rows(res)
    if rows:
        r = rows[0]
        out += ["### Latency target on LiteRT (staircase widths, drift-checked)", "",
                f"`plan_latency_pruning` to {r['fraction']} x the measured LiteRT int8 latency "
                f"(1 thread, default `latency_fn`), latency staircases swept at 0.75/0.5/0.25 "
                f"of each group ({r['staircase_probes']} prices per group). The result is timed "
                "interleaved with the original, 3 separate runs of 600 invokes each (median of "
                "the 3 medians, min-max across them); *drift-corrected* scales the achieved "
                "median by the original's latency at planning / at verification.", "",
                "| model | original ms at plan | original ms at verify (min-max) | target ms | "
                "achieved ms (min-max) | achieved / target | drift-corrected / target | "
                "speedup | MAC reduction | speedup / MAC red. | steps on a step width | "
                "plan time (conversions) |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            b, a = r["base"], r["achieved"]
            out += [f"| {r['model']} | {r['base_ms_at_plan']:.4f} | {b['median_ms']:.4f} "
                f"({b['min_ms']:.4f}-{b['max_ms']:.4f}) | {r['target_ms']:.4f} | "
                f"{a['median_ms']:.4f} ({a['min_ms']:.4f}-{a['max_ms']:.4f}) | "
                f"{r['achieved_over_target']:.3f} | {r['corrected_over_target']:.3f} | "
                f"{r['speedup']:.2f}x | {r['mac_reduction']:.2f}x | {r['speedup_per_mac']:.2f} | "
                f"{r['on_step']}/{r['steps']} | {r['plan_time_s']:.0f} s"
                + (f" ({r['conversions']})" if r.get("conversions") is not None else "")
                + " |"]
        out.append("")
    if "planner_speed" in res:
        out += ["### Latency planner: re-widthed flatbuffers vs a conversion per candidate", "",
                "`plan_latency_pruning` to 0.7 x the LiteRT int8 latency, both ways in one "
                "process; achieved = median of 3 interleaved runs of 600 invokes with the "
                "original.", "",
                "| model | candidates priced on | plan time | conversions | pricings | "
                "convert s | price s | achieved / target |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in res["planner_speed"]:
            pl = r["planner"]
            out.append(f"| {r['model']} | {'re-widthed flatbuffer' if r['rewidth'] else 'a conversion each'} "
                       f"| {r['plan_time_s']:.0f} s | {pl.get('conversions')} | {pl.get('pricings')} "
                       f"| {pl.get('convert_s', 0):.0f} | {pl.get('price_s', 0):.0f} "
                       f"| {r['achieved_over_target']:.3f} |")
        out.append("")
    if "mac_vs_latency" in res:
        out += ["### MAC target vs latency target: speedup per MAC reduction (LiteRT int8)", "",
                "ResNet-20 on Fashion-MNIST (28x28x1), each model trained from scratch for the "
                "same epochs; the latency target is the MAC-pruned model's measured latency. "
                "Latency: 3 separate interleaved runs of 600 invokes (median of medians, "
                "min-max); accuracy on 2,000 real test images.", "",
                "| how | MACs | MAC reduction | LiteRT int8 ms (min-max) | speedup | "
                "speedup / MAC red. | top-1 | loss vs unpruned |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["mac_vs_latency"]:
            lt = r["latency"]
            out.append(f"| {r['how']} | {r['macs']:,} | {r['mac_reduction']:.2f}x | "
                       f"{lt['median_ms']:.4f} ({lt['min_ms']:.4f}-{lt['max_ms']:.4f}) | "
                       f"{r['speedup']:.2f}x | {r['speedup_per_mac']:.2f} | "
                       f"{r['accuracy'] * 100:.1f} % | {r['accuracy_loss'] * 100:+.1f} pt |")
        out.append("")
    if "latency" in res:
        out += ["### Speedup per MAC reduction on both runtimes (L1 pruning)", "",
                "| model | MAC reduction | LiteRT int8 ms | speedup | / MAC red. | TFLM ms | "
                "speedup | / MAC red. |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in res["latency"]:
            out.append(f"| {r['model']} | {r['mac_reduction']:.2f}x | {r['litert_int8_ms']:.3f} | "
                       f"{r['litert_speedup']:.2f}x | {r['litert_speedup_per_mac']:.2f} | "
                       f"{r['tflm_ms']:.2f} | {r['tflm_speedup']:.2f}x | "
                       f"{r['tflm_speedup_per_mac']:.2f} |")
        out.append("")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sections", default="estimate,latency,target,latency_target")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train", type=int, default=12000)
    p.add_argument("--out", default=RESULTS)
    p.add_argument("--latency-runtime", default="tflm", choices=("tflm", "litert"))
    p.add_argument("--latency-model", default="mobilenetv2-0.35-96",
                   help="latency_target_litert: a FAMILIES name or mobilenetv2-style-32")
    p.add_argument("--staircase-probes", type=int, default=4)
    p.add_argument("--no-rewidth", action="store_true",
                   help="latency_target_litert: convert every candidate (the planner before "
                        "re-widthing)")
    args = p.parse_args(argv)
    sections = args.sections.split(",")
    command = ("nice -n 5 python benchmarks/edge_arena.py "
               + " ".join(argv or sys.argv[1:]))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "edge_arena.json")
    res = json.load(open(path)) if os.path.exists(path) else {}

    def log(msg):
        print(time.strftime("%H:%M:%S"), msg, flush=True)

    res.setdefault("commands", {})
    for section in sections:
        res["commands"][section] = command

    def save():
        atomic_write_text(path, json.dumps(res, indent=1))
        atomic_write_text(os.path.join(args.out, "edge_arena.md"), markdown(res, command))

    flats = None
    if "estimate" in sections or "latency" in sections:
        res["estimate"], flats = section_estimate(log)
        save()
    if "latency" in sections:
        res["latency"] = section_latency(flats, log)
        save()
    if "target" in sections:
        res.setdefault("target", [])
        section_target(log, args.epochs, args.train, res["target"], save)  # saved per row
    if "latency_target" in sections:
        res["latency_target"] = section_latency_target(log, args.latency_runtime)
        save()
    if "latency_target_litert" in sections:  # not in the default run
        row = section_latency_target_litert(log, args.latency_model,
                                            probes=args.staircase_probes,
                                            rewidth=not args.no_rewidth)
        res["latency_target_litert"] = [r for r in _litert_rows(res)
                                         if r["model"] != row["model"]] + [row]
        res["commands"][f"latency_target_litert ({row['model']})"] = command
        save()
    if "mac_vs_latency" in sections:  # not in the default run
        res["mac_vs_latency"] = section_mac_vs_latency(log, args.epochs, args.train,
                                                       probes=args.staircase_probes)
        save()
    if "planner_speed" in sections:  # not in the default run
        rows = section_planner_speed(log, args.latency_model, probes=args.staircase_probes)
        res["planner_speed"] = [r for r in res.get("planner_speed", [])
                                if r["model"] != args.latency_model] + rows
        res["commands"][f"planner_speed ({args.latency_model})"] = command
        save()
    if "fit_tail" in sections:  # not in the default run: prints the refitted constants
        res["tail_fit"] = section_fit_tail(log)
        save()


if __name__ == "__main__":
    main()
