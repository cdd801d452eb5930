"""Complexity-driven pruning: parameter-, FLOPs- and memory-aware modes.

Zawish, Davy, Abraham, *Complexity-Driven CNN Compression for
Resource-constrained Edge AI* (2022), as specified in ALGORITHMS.md:

1. Each dependency group's weight is its share of the model's complexity in
   the chosen mode (`kprune.core.complexity_weights`): parameters (PA), MACs (FA)
   or activation memory at batch 1 (MA).
2. A seeded weighted random draw picks a group; a step removes
   ``step_fraction`` of its remaining channels (at least one, never below
   ``min_channels``). Weights are recomputed on the pruned model after every
   step, so they stay shares of the *remaining* complexity.
3. After every step the rebuilt model is measured with `kprune.profile`; the
   search stops at the first step that meets the target (so the target is met
   within one step).
4. No ranking and no fine-tuning: the pruned architecture is re-initialised
   and trained from scratch.

What is measured:

* ``params``: `Profile.params`;
* ``macs``: `Profile.macs` (multiply-accumulates, batch 1; FLOPs = 2 x MACs,
  only for display);
* ``memory``: `Profile.peak_activation_bytes` (float32, or
  `peak_activation_bytes_int8` with ``memory_dtype='int8'``), the tensor
  arena the model needs when run layer by layer (TFLite Micro).
  Memory-mode *weights* use each group's share of the summed per-layer
  activation footprints (input + output bytes), the paper's layer-level
  definition; the *stopping rule* uses the peak, which is what has to fit
  in RAM.

The package: `resources` (what is measured), `draw` (the params / MACs /
memory planner), `arena` (the TFLite-Micro arena planner), `latency` (the
measured-latency planner) and `method` (``kprune.prune(method='complexity')``).

Example:
    >>> pruned, steps = plan_complexity_pruning(kprune.zoo.lenet5(), "macs",
    ...                                         target=0.5, seed=0)
    >>> steps[-1]["reduction"]["macs"] >= 0.5
    True
"""

from kprune.core.complexity_weights import complexity_weights, group_complexity
from kprune.methods.complexity.arena import arena_of, plan_arena_pruning
from kprune.methods.complexity.draw import complexity_steps, plan_complexity_pruning
from kprune.methods.complexity.latency import (group_step_widths, latency_staircase,
                                               plan_latency_pruning)
from kprune.methods.complexity.method import ComplexityOptions, complexity
from kprune.methods.complexity.resources import reinitialize, resources
from kprune.methods.device_budget import minimal_model

__all__ = ["ComplexityOptions", "arena_of", "complexity", "complexity_steps",
           "complexity_weights", "group_complexity", "group_step_widths", "latency_staircase",
           "minimal_model",
           "plan_arena_pruning", "plan_complexity_pruning", "plan_latency_pruning",
           "reinitialize", "resources"]
