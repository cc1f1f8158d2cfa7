"""The ``allocator`` command line: every front-end in one place.

This package is the only part of the runtime (``allocator/``) that may import
``training`` or ``envs``: the commands that train, evaluate or calibrate are front-ends of
the training code, imported when their command runs. The serving path (``allocator.load``,
sessions, the HTTP service, the executors) never imports them; a contract test
(``tests/allocator/test_layers.py``) fails on any new import from the rest of the runtime
to ``training`` or ``envs``.
"""

from allocator.cli.app import app, main

__all__ = ["app", "main"]
