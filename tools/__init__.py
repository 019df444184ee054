"""The project's own developer commands: ``make demo`` (``tools.runner``) and ``make databricks-smoke`` (``tools.smoke``).

They drive the lifecycle from outside; no notebook or job imports them, so they live beside ``utils``, not in it.
"""
