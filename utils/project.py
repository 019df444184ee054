"""The project's names: the answers `copier copy` asked for, in one place (see docs/make-it-yours.md).

In the template this file is rendered from ``project.py.jinja``; every default name in :mod:`utils.config`
(catalog, model, experiment, endpoint, online store) derives from these.
"""

NAME = "plantly"
"""The project's slug: the local catalog, and the root of the model, experiment and endpoint names."""

DISTRIBUTION = "plantly-mlops"
"""The Python distribution (pyproject's ``name``), also the bundle's name and its wheel tasks' package."""

DEV_CATALOG = "workspace"
"""The Unity Catalog catalog of the bundle's development targets (``dev``, ``serverless``)."""

PROD_CATALOG = ""
"""The production catalog staging promotes the champion to; empty: no promotion, said in one line."""
