"""The ``kprune`` command line (absl flags and logging, like TensorFlow's tools).

Subcommands:

* ``kprune prune --model in.keras --method iap --data fashion_mnist --out DIR``
* ``kprune bench --model pruned.keras --compare in.keras --data fashion_mnist --out DIR``
* ``kprune export --model pruned.keras --data fashion_mnist --out DIR``

``kprune SUBCOMMAND --help`` lists every flag. Models are loaded in Keras safe
mode (no code from a model file runs) unless ``--unsafe_load`` is given;
everything is written under ``--out``.

Example:
    >>> from kprune.cli.main import main
    >>> main(["kprune", "prune", "--help"])
    0
"""
