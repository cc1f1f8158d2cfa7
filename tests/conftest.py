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


def require_ray():
    """The ``ray`` module, or a skip where the ``ray`` extra is not installed (users'
    clones); ``make test`` (CI) sets ``ALLOCATOR_REQUIRE_RAY=1``, and then a missing Ray
    fails the test instead: the sweep and sharded-evaluation tests must run there."""
    import os

    try:
        import ray
    except ImportError as error:
        if os.environ.get("ALLOCATOR_REQUIRE_RAY") == "1":
            pytest.fail(f"ALLOCATOR_REQUIRE_RAY=1 but ray is not importable ({error}): "
                        "pip install -e '.[ray]' (make install does)")
        pytest.skip(f"ray is not installed ({error}): pip install 'ttc-allocator[ray]'")
    return ray


@pytest.fixture(scope="module")
def local_ray():
    """A real local Ray of 2 CPUs on loopback for the whole test module (start-up takes
    seconds: one per module), shut down afterwards."""
    import os

    ray = require_ray()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             ignore_reinit_error=True)
    try:
        yield ray
    finally:
        ray.shutdown()
