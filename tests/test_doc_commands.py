"""Every command in README.md, BENCHMARKS.md, docs/ and the package's
docstrings stays true: shell commands are parsed by the real command-line
flag definitions (an unknown or renamed flag, a bad enum value or a missing
script fails here), and every ``kprune.<name>...`` a Python block or a
docstring example calls exists."""

import ast
import os
import re
import shlex

import pytest

import kprune
import kprune.bench
import kprune.export
import kprune.methods
import kprune.runtime

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def _linked_sections(page="BENCHMARKS.md"):
    """The detailed benchmark sections `page` links (benchmarks/results/*.md)."""
    with open(os.path.join(HERE, page)) as f:
        return sorted(set(re.findall(r"\]\((benchmarks/results/[\w.-]+\.md)\)", f.read())))


DOCS = ["README.md", "BENCHMARKS.md"] + _linked_sections() + [
    os.path.join("docs", f) for f in sorted(os.listdir(os.path.join(HERE, "docs")))
    if f.endswith(".md")]


def _fences(path):
    """(language, text, first line) of every fenced block of a markdown file."""
    out, lang, buf, start = [], None, [], 0
    with open(os.path.join(HERE, path)) as f:
        for i, line in enumerate(f, 1):
            if line.startswith("```"):
                if lang is None:
                    lang, buf, start = line[3:].strip() or "text", [], i + 1
                else:
                    out.append((lang, "".join(buf), start))
                    lang = None
            elif lang is not None:
                buf.append(line)
    return out


def _shell_commands(text):
    """Logical command lines (backslash continuations joined, comments cut)."""
    lines, cur = [], ""
    for raw in text.splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        if cur.strip():
            lines.append(cur.strip())
        cur = ""
    return lines


def _doc_commands():
    cmds = []
    for path in DOCS:
        for lang, text, line in _fences(path):
            if lang in ("bash", "sh", "text", "console"):
                cmds += [(f"{path}:{line}", c) for c in _shell_commands(text)]
    for d, _, files in os.walk(os.path.join(HERE, "kprune")):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), HERE)
                with open(os.path.join(d, f)) as fh:
                    for i, line in enumerate(fh, 1):
                        for m in re.finditer(r"``((?:kprune|kprune-bench) [^`]*--[^`]*)``",
                                             line):
                            cmds.append((f"{rel}:{i}", m.group(1)))
    return cmds


def _check_command(cmd):
    """Parse `cmd` like the command line would; returns None or an error."""
    from kprune.cli import main as cli
    from kprune.cli.common import new_flag_values

    argv = shlex.split(cmd)
    if any("[" in a or (a.isupper() and len(a) > 1) for a in argv[1:]):
        return None  # a usage synopsis (kprune-bench MODEL [--flag ...]), not a command
    if argv[0] == "bash":
        return None if os.path.isfile(os.path.join(HERE, argv[1])) else f"no {argv[1]}"
    if argv[0] == "kprune-bench":
        for a in argv[1:]:
            if a.split("=", 1)[0] in cli._OLD_BENCH_FLAGS:
                return f"old kprune-bench flag {a}"
        rest = argv[1:]
        if rest and not rest[0].startswith("-"):
            rest = ["--model", rest[0]] + rest[1:]
        argv = ["kprune", "bench"] + rest
    if argv[0] != "kprune":
        return None  # not a kprune command (e.g. pip)
    if argv[1] not in cli.COMMANDS:
        return f"unknown command {argv[1]}"
    fv = new_flag_values()
    cli.COMMANDS[argv[1]].define_flags(fv)
    args = [cli._underscored(a) for a in argv[2:]]
    if any(a in cli._HELP for a in args):
        return None
    try:
        rest = fv([f"kprune {argv[1]}"] + args)
    except Exception as e:  # noqa: BLE001 - absl flags errors
        return str(e)
    return None if len(rest) == 1 else f"unexpected arguments {rest[1:]}"


COMMANDS = _doc_commands()


def test_the_docs_have_commands_to_check():
    assert len(COMMANDS) >= 8
    assert any(c.startswith("kprune prune") for _, c in COMMANDS)
    assert any(c.startswith("kprune-bench") for _, c in COMMANDS)


@pytest.mark.parametrize("where, cmd", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_parses(where, cmd):
    err = _check_command(cmd)
    assert err is None, f"{where}: `{cmd}`: {err}"


def test_the_checker_catches_stale_commands():
    assert _check_command("kprune-bench a.keras --json out.json")
    assert _check_command("kprune prune --model a.keras --methd iap")
    assert _check_command("kprune prune --model a.keras --method nope")
    assert _check_command("kprune bench --model a.keras --eval_data x.npz")
    assert _check_command("bash no_such_script.sh")
    assert _check_command("kprune prune --model a.keras --mode latency --out o") is None


def _kprune_names(code):
    """Dotted names ``kprune.a.b`` used in `code` (attribute chains)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts, cur = [], node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id == "kprune":
                names.add(".".join(["kprune"] + parts[::-1]))
    return names


def _resolves(dotted):
    obj = kprune
    for part in dotted.split(".")[1:]:
        if not hasattr(obj, part):
            try:
                __import__(f"{obj.__name__}.{part}")
            except (ImportError, AttributeError):
                return False
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return True


def _python_blocks():
    blocks = []
    for path in DOCS:
        for lang, text, line in _fences(path):
            if lang == "python":
                blocks.append((f"{path}:{line}", text))
    return blocks


@pytest.mark.parametrize("where, code", _python_blocks(), ids=[w for w, _ in _python_blocks()])
def test_documented_python_compiles_and_calls_what_exists(where, code):
    names = _kprune_names(code)
    assert names is not None, f"{where}: the block is not valid Python"
    missing = sorted(n for n in names if not _resolves(n))
    assert not missing, f"{where}: {missing} do not exist"


def test_docstring_examples_call_what_exists():
    """``>>> kprune.x.y(...)`` lines of the package's docstrings."""
    missing = []
    for d, _, files in os.walk(os.path.join(HERE, "kprune")):
        for f in files:
            if not f.endswith(".py"):
                continue
            with open(os.path.join(d, f)) as fh:
                for i, line in enumerate(fh, 1):
                    m = re.match(r"\s*(?:>>>|\.\.\.) (.*)", line)
                    if not m:
                        continue
                    for name in re.findall(r"\bkprune(?:\.[A-Za-z_]\w*)+", m.group(1)):
                        if not _resolves(name):
                            missing.append(f"{os.path.relpath(os.path.join(d, f), HERE)}:{i}: "
                                           f"{name}")
    assert not missing, "docstring examples call what does not exist:\n" + "\n".join(missing)


def test_benchmarks_page_opens_with_current_figures():
    """BENCHMARKS.md opens with one current-figures table per area, each with
    its command, and links every detailed section (which all exist)."""
    with open(os.path.join(HERE, "BENCHMARKS.md")) as f:
        text = f.read()
    head = text[:text.index("## Detailed sections")]
    for area in ("Quality", "Surgery", "Edge", "Device budgets", "QAT"):
        assert re.search(rf"^### {area}\b", head, re.M), area
    assert head.count("python benchmarks/") >= 5
    sections = _linked_sections()
    assert len(sections) >= 10
    assert all(os.path.exists(os.path.join(HERE, p)) for p in sections)
    # one short table per area (11 areas: 3 quality, surgery, edge, per-op
    # latency, budgets, run cost, QAT, backends) and the index: a page, not a report
    assert len(text.splitlines()) < 190

