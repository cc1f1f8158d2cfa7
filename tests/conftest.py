"""Shared fixtures: where the public logs live, and a skip where they do not."""

from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (CI included): a failure found once
# is found again, and a green run is not luck.
settings.register_profile("deterministic", derandomize=True, print_blob=True)
settings.load_profile("deterministic")

PUBLIC_LOGS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "public-logs"


@pytest.fixture(scope="session")
def public_logs() -> Path:
    """The folder of real public logs (``../shared/data/public-logs``), or a skip."""
    if not PUBLIC_LOGS.is_dir():
        pytest.skip(
            f"public logs not found at {PUBLIC_LOGS} (they live in ../shared beside the repo)"
        )
    return PUBLIC_LOGS
