"""What a pruning run reports: `PruneResult`, plots and TensorBoard summaries."""

from kprune.reporting.result import PruneResult

__all__ = ["PruneResult"]
