"""``python -m kprune.cli``: the same as the ``kprune`` console script."""

from kprune.cli.main import run

if __name__ == "__main__":
    run()
