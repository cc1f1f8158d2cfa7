"""Build of the one optional C extension; everything else is in pyproject.toml.

``allocator._mlpkernel`` is the learned allocator's single-state forward pass (see
``allocator/_mlpkernel.c``). It needs only a C compiler and the Python headers. Where it
cannot be built, installation goes on (``optional=True``) and ``allocator.learned`` uses
its numpy path, which decides the same; ``allocator.learned.kernel_available()`` tells
which one runs.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("allocator._mlpkernel", ["allocator/_mlpkernel.c"],
                             optional=True)])
