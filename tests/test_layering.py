"""The package layout is a promise: the data path core -> scoring -> methods
-> reporting, export/bench beside the core, cli on top, and no import cycles.

These tests read every module's import statements (module level and inside
functions alike) with `ast`, so they fail on the commit that breaks a rule,
not when a user happens to import in an unlucky order.
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kprune")

#: layer of kprune -> the layers its modules may import (besides their own).
ALLOWED = {
    # Keras/TF version differences: below everything, imports nothing of kprune
    "compat": set(),
    "core": {"compat"},
    "data": {"compat"},
    "atomic": set(),
    "datasets": set(),
    "zoo": set(),
    "scoring": {"compat", "core", "data"},
    # the device runtimes take flatbuffer bytes; export converts (and uses the
    # runtimes: arena size of a C array); bench measures Keras models on both
    "runtime": {"compat", "core", "data", "atomic"},
    "export": {"compat", "core", "data", "atomic", "runtime"},
    "bench": {"compat", "core", "data", "atomic", "export", "runtime"},
    "methods": {"compat", "core", "data", "atomic", "scoring", "export", "bench", "runtime"},
    "reporting": {"compat", "core", "data", "atomic", "methods", "bench"},
    "testing": {"compat", "core"},
    "prune": {"compat", "core", "data", "methods", "reporting", "scoring"},
    "cli": {"core", "data", "atomic", "datasets", "zoo", "scoring", "methods", "reporting",
            "export", "bench", "runtime", "compat", "prune"},
    "demo": {"compat", "core", "data", "atomic", "datasets", "zoo", "methods", "reporting",
             "export", "bench", "runtime", "prune"},
}


def _modules():
    mods = {}
    for d, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(d, f)
            rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
            mods[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return mods


def _edges(mods):
    """{module: {imported kprune module}} from every import statement."""
    edges = {}
    for name, path in mods.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        out = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and node.module.split(".")[0] == "kprune":
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    out.add(sub if sub in mods else node.module)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.split(".")[0] == "kprune")
        out.discard(name)
        edges[name] = out
    return edges


def _layer(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "kprune"


def _cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    cycles = _cycles(_edges(_modules()))
    assert not cycles, f"import cycles among kprune modules: {cycles}"


def _violations(edges):
    bad = []
    for module, targets in edges.items():
        layer = _layer(module)
        if layer == "kprune":  # the package's public namespace re-exports everything
            continue
        assert layer in ALLOWED, f"module {module} is in no known layer; add it to ALLOWED"
        for t in targets:
            tl = _layer(t)
            if tl == "kprune":
                bad.append(f"{module} imports the top-level package 'kprune' (import the "
                           "defining module instead)")
            elif tl != layer and tl not in ALLOWED[layer]:
                bad.append(f"{module} ({layer}) imports {t} ({tl})")
    return sorted(bad)


def test_layers_import_only_what_they_may():
    bad = _violations(_edges(_modules()))
    assert not bad, "layering violations:\n" + "\n".join(bad)


def _imported_names():
    """(module, imported module name) for every import statement of kprune."""
    for module, path in _modules().items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                yield module, node.module
            elif isinstance(node, ast.Import):
                for a in node.names:
                    yield module, a.name


def test_private_keras_api_only_in_keras_compat():
    """`keras.src` / `tensorflow.python` / tf_keras internals appear in one module only."""
    bad = [f"{module}: import {n}" for module, n in _imported_names()
           if module != "kprune.compat.keras_private"
           and n.startswith(("keras.src", "tensorflow.python", "tf_keras.src"))]
    assert not bad, "private API outside kprune.compat.keras_private:\n" + "\n".join(bad)


def test_backend_engines_only_in_compat_backend():
    """``jax`` and ``torch`` are imported by `kprune.compat.backend` only: the
    backend-specific code of kprune lives in one module."""
    bad = [f"{module}: import {n}" for module, n in _imported_names()
           if module != "kprune.compat.backend"
           and n.split(".")[0] in ("jax", "jaxlib", "torch")]
    assert not bad, "backend engines imported outside kprune.compat.backend:\n" + "\n".join(bad)


def test_one_compat_package():
    """Version / private-API differences live in `kprune.compat` only; the old
    module paths are the same module objects, and compat depends on nothing."""
    import kprune.compat
    from kprune.compat import keras_private, tf_keras_bridge
    from kprune.core import _keras_compat, tf_keras

    assert _keras_compat is keras_private and tf_keras is tf_keras_bridge
    assert kprune.compat.to_tf_keras is tf_keras_bridge.to_tf_keras
    edges = _edges(_modules())
    assert {t for m, ts in edges.items() if _layer(m) == "compat" for t in ts} <= {
        "kprune.compat", "kprune.compat.keras_private", "kprune.compat.tf_keras_bridge",
        "kprune.compat.backend"}
    assert not [m for m, ts in edges.items() if "kprune.core.tf_keras" in ts]


def test_the_checks_fail_on_a_cycle_and_a_layer_violation():
    """The detectors themselves: a planted cycle and a planted upward import."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert _violations({"kprune.core.graph": {"kprune.methods.run"},
                        "kprune.bench.measure": {"kprune"},
                        "kprune.methods.run": {"kprune.core.graph"}}) == [
        "kprune.bench.measure imports the top-level package 'kprune' (import the defining "
        "module instead)",
        "kprune.core.graph (core) imports kprune.methods.run (methods)"]
    real = _edges(_modules())
    assert "kprune.core.dependency" in real["kprune.core.surgery"]  # the scan sees imports


def test_runtime_and_export_form_no_cycle():
    """The device-runtime layer never imports export or bench, and export
    never imports bench: runtime <- export <- bench, one direction only."""
    edges = _edges(_modules())
    up = {"runtime": {"export", "bench"}, "export": {"bench"}}
    bad = sorted(f"{m} imports {t}" for m, ts in edges.items() for t in ts
                 if _layer(t) in up.get(_layer(m), ()))
    assert not bad, bad
    assert any(_layer(t) == "runtime" for t in edges["kprune.export.c_source"])
    assert ALLOWED["runtime"].isdisjoint({"export", "bench"})
    assert "bench" not in ALLOWED["export"]


@pytest.mark.parametrize("layer", ["export", "bench", "runtime"])
def test_edge_code_never_imports_method_code(layer):
    for module, targets in _edges(_modules()).items():
        if _layer(module) == layer:
            assert not {_layer(t) for t in targets} & {"methods", "scoring", "reporting"}, module


def test_every_test_file_has_a_build_target():
    """BUILD mirrors the package: each tests/test_*.py is a py_test."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(os.path.dirname(here), "BUILD")) as f:
        build = f.read()
    missing = [f for f in sorted(os.listdir(here))
               if f.startswith("test_") and f.endswith(".py")
               and f'srcs = ["tests/{f}"]' not in build]
    assert not missing, f"add py_test targets to BUILD for {missing}"
