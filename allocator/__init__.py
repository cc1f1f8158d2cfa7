"""ttc-allocator: decide, query by query, how much test-time compute an LLM should spend.

The runtime package. It imports numpy and pyarrow only; heavy libraries (torch,
stable-baselines3, mlflow, fastapi) stay out of its import path.
"""

from allocator.errors import AllocatorError, LogFormatError
from allocator.logs import AttemptLog, QueryTable

__all__ = ["AllocatorError", "AttemptLog", "LogFormatError", "QueryTable", "__version__"]

__version__ = "0.1.0"
