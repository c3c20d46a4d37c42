"""logger=mlflow: Lightning's MLFlowLogger with a clear error when MLflow is missing and a local
SQLite store that just works.

MLflow 3 refuses its old file store (./mlruns as plain files) unless MLFLOW_ALLOW_FILE_STORE=true,
so the local default is SQLite. A relative `sqlite:///a/3/../mlruns/mlflow.db` is made absolute
(the UI shows where the store really is) and its directory created: SQLite creates the file,
not the directories above it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger as LightningMLFlowLogger

SQLITE_PREFIX = "sqlite:///"
INSTALL_HINT = (
    "pip install 'lora_lab[mlflow]' (mlflow-skinny: the tracking client without MLflow's server and UI; "
    "the full `mlflow` package works as well)"
)


class MLFlowLogger(LightningMLFlowLogger):
    """MLFlowLogger whose tracking_uri may be a local SQLite file with relative parts."""

    def __init__(self, *, tracking_uri: str | None = None, artifact_location: str | None = None, **kwargs: Any):
        require_mlflow()
        if tracking_uri is not None and tracking_uri.startswith(SQLITE_PREFIX):
            db = Path(tracking_uri[len(SQLITE_PREFIX) :]).resolve()
            db.parent.mkdir(parents=True, exist_ok=True)
            tracking_uri = f"{SQLITE_PREFIX}{db}"
        if (
            artifact_location is not None
            and "://" not in artifact_location
            and not artifact_location.startswith("file:")
        ):
            artifact_location = str(Path(artifact_location).resolve())
        super().__init__(tracking_uri=tracking_uri, artifact_location=artifact_location, **kwargs)


def require_mlflow() -> None:
    """Fail naming the install command, before Lightning's generic "Module not found" message."""
    try:
        import mlflow  # noqa: F401 - imported only to check that MLflow is installed
    except ImportError as err:
        raise ModuleNotFoundError(f"logger=mlflow needs MLflow, which is not installed: {INSTALL_HINT}") from err
