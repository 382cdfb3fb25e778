"""AnomSeer: teach multimodal language models to find, classify and explain time-series anomalies.

The library holds all the work; ``orchestration/`` (Dagster) and ``dvc.yaml`` are thin shells
over :mod:`anomseer.stages`. Nothing here imports Dagster.
"""

__version__ = "0.1.0"
