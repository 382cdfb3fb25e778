"""The project resource: where the data lives and which params file to read."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg


def _default_root() -> str:
    return os.environ.get("ANOMSEER_ROOT", str(Path(__file__).resolve().parents[2]))


class AnomSeerProject(dg.ConfigurableResource):
    """Project root (holds ``data/`` and ``params.yaml``); defaults to the repository root or
    ``$ANOMSEER_ROOT``. ``params_file`` is relative to the root unless absolute."""

    root: str = _default_root()
    params_file: str = "params.yaml"

    def root_path(self) -> Path:
        return Path(self.root)

    def params(self):
        from anomseer.config import load_params

        path = Path(self.params_file)
        return load_params(path if path.is_absolute() else self.root_path() / path)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"project": AnomSeerProject()})
