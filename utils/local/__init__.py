"""Local stand-ins for what Databricks manages and open source does not ship as an engine.

Everything here exists only so the same notebooks run on a laptop or CI runner; a team that runs
only on Databricks can delete this package (and the local branches in ``utils.platform``).
"""
