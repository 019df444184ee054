"""MLOps lifecycle library: one module per concern, nothing happens at import time."""

__version__ = "0.1.0"
