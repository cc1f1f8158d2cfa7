"""Terminal rendering of the project's tables (rich)."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.table import Table

from allocator.logs.summary import ArmSummary

__all__ = ["summary_table"]


def summary_table(summary: Mapping[str, ArmSummary], title: str) -> Table:
    """A rich table of per-arm log statistics, one row per arm."""
    table = Table(title=title, title_justify="left")
    table.add_column("arm", style="bold")
    for header in ("queries", "attempts/query", "attempt acc", "majority acc", "any correct",
                   "always", "never", "sometimes", "cost/attempt"):
        table.add_column(header, justify="right")
    for arm, row in summary.items():
        table.add_row(
            arm,
            f"{row.queries:,}",
            f"{row.attempts_per_query:.1f}",
            f"{row.attempt_accuracy:.3f}",
            f"{row.majority_accuracy:.3f}",
            f"{row.any_correct:.3f}",
            f"{row.always:,}",
            f"{row.never:,}",
            f"{row.sometimes:,}",
            f"{row.mean_cost:,.4g}",
        )
    return table


def stderr_console() -> Console:
    """A console on stderr, so that ``--json`` output on stdout stays machine-readable."""
    console = Console(stderr=True)
    if not console.is_terminal:
        # Logs and CI captures have no width: do not squeeze tables to 80 columns.
        console = Console(stderr=True, width=160)
    return console
