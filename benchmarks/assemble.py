"""Assembles BENCHMARKS.md: the current-figures tables
(`benchmarks/results/summary.md`, one per area, each figure copied from a
detailed section) and an index of the detailed sections, which stay under
benchmarks/results/ (each benchmark script writes its own markdown section).

    python benchmarks/assemble.py
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
SECTIONS = [
    ("surgery.md", "## Channel surgery cost\n\nCommand: `python benchmarks/surgery.py` "
     "(median of interleaved repeats in one process; peak RSS measured in child "
     "processes after the model is built). Target: kprune / clone ratio <= 1.5.\n"),
    ("fuzz_surgery.md", None),
    ("BENCHMARKS_methods.md", None),
    ("quality_section.md", None),
    ("quality_seq_intro.md", None),
    ("quality_seq.md", None),
    ("quality_seq_split.md", None),
    ("complexity.md", None),
    ("edge_arena_intro.md", None),
    ("edge_arena.md", None),
    ("edge.md", None),
    ("op_profile.md", None),
    ("op_profile_resnet20.md", None),
    ("budget_targets.md", None),
    ("qat.md", None),
    ("run_cost.md", None),
    ("backends.md", None),
    ("export_backends.md", None),
]
IMAGES = {"BENCHMARKS_methods.md": ("paper.png",),
          "quality_section.md": ("quality.png",),
          "quality_seq.md": ("quality_seq.png",),
          "quality_seq_split.md": ("quality_seq_split.png",),
          "complexity.md": ("complexity.png",)}
HEADER = """# kprune benchmarks

Latest figures, each with the command that made it. Every number comes from a
JSON file under `benchmarks/results/`; this page is rebuilt from them with
`python benchmarks/assemble.py`. Machine: 2 x86-64 cores (Xeon @ 2.5 GHz),
24 GiB, no GPU; during these runs the CPU was shared by several jobs, so
wall-clock times are noisy (ratios were measured interleaved in one process).
"""


TITLES = {"surgery.md": "Channel surgery cost",
          "quality_seq.md": "Pruning quality: ViT / GRU full tables (parameters and MACs)",
          "quality_seq_split.md": "Pruning quality: ViT budget split between heads, head dims, MLP and width",
          "edge_arena.md": "Device budgets: arena estimate, arena and latency target tables"}


def _title(name):
    with open(os.path.join(RESULTS, name)) as f:
        first = f.readline().strip()
    return TITLES.get(name) or first.lstrip("# ").strip() or name


def main():
    parts = [HEADER]
    with open(os.path.join(RESULTS, "summary.md")) as f:
        parts.append(f.read().strip())
    index = ["## Detailed sections", ""]
    for name, intro in SECTIONS + [("notes.md", None)]:
        if not os.path.exists(os.path.join(RESULTS, name)):
            continue
        line = f"- [{_title(name)}](benchmarks/results/{name})"
        if intro:
            line += ": " + intro.partition("\n\n")[2].strip()
        images = [f"[{i}](benchmarks/results/{i})" for i in IMAGES.get(name, ())
                  if os.path.exists(os.path.join(RESULTS, i))]
        index.append(line + (f" (figure: {', '.join(images)})" if images else ""))
    parts.append("\n".join(index))
    out = os.path.join(HERE, "..", "BENCHMARKS.md")
    with open(out, "w") as f:
        f.write("\n\n".join(parts) + "\n")
    print(f"wrote {os.path.normpath(out)}")


if __name__ == "__main__":
    main()
