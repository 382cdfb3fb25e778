"""Dagster orchestration of the AnomSeer lineage: thin shells over :mod:`anomseer.stages`."""
