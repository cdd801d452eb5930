"""Assembles BENCHMARKS.md from the sections the benchmark scripts write
under benchmarks/results/ (each script writes its own markdown section).

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
    ("complexity.md", None),
    ("edge_arena_intro.md", None),
    ("edge_arena.md", None),
    ("edge.md", None),
    ("budget_targets.md", None),
    ("qat.md", None),
]
IMAGES = {"BENCHMARKS_methods.md": ("paper.png",),
          "quality_section.md": ("quality.png",),
          "complexity.md": ("complexity.png",)}
HEADER = """# kprune benchmarks

Latest figures, each with the command that made it. Every number comes from a
JSON file under `benchmarks/results/`; this page is rebuilt from them with
`python benchmarks/assemble.py`. Machine: 2 x86-64 cores (Xeon @ 2.5 GHz),
24 GiB, no GPU; during these runs the CPU was shared by several jobs, so
wall-clock times are noisy (ratios were measured interleaved in one process).
"""


def main():
    parts = [HEADER]
    for name, intro in SECTIONS:
        path = os.path.join(RESULTS, name)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            text = f.read().strip()
        if text.startswith("# "):
            text = "#" + text  # demote to a section
        if intro:
            title, _, rest = text.partition("\n") if text.startswith("##") else ("", "", text)
            text = (title + "\n\n" if title else "") + intro + "\n" + rest.strip()
        for image in IMAGES.get(name, ()):
            if os.path.exists(os.path.join(RESULTS, image)):
                text += f"\n\n![{image}](benchmarks/results/{image})"
        parts.append(text)
    notes = os.path.join(RESULTS, "notes.md")
    if os.path.exists(notes):
        with open(notes) as f:
            parts.append(f.read().strip())
    out = os.path.join(HERE, "..", "BENCHMARKS.md")
    with open(out, "w") as f:
        f.write("\n\n".join(parts) + "\n")
    print(f"wrote {os.path.normpath(out)}")


if __name__ == "__main__":
    main()
