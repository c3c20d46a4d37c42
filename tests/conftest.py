"""Shared fixtures: configs composed with Hydra's compose API, as `python -m lora_lab.train` would."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from tests.helpers import TICKETS, compose_train, finished_job, require_or_skip, tiny_overrides

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# Tests never touch the user's cache: one fresh cache dir per test session.
os.environ["LORA_LAB_CACHE_DIR"] = tempfile.mkdtemp(prefix="lora_lab_test_cache_")

INTEGRATION = Path(__file__).resolve().parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The split is the marker: every test in tests/integration is `slow`, none in tests/unit is.
    `make test-fast` (-m "not slow") therefore runs exactly tests/unit."""
    for item in items:
        in_integration = INTEGRATION in Path(item.fspath).parents
        if in_integration:
            item.add_marker(pytest.mark.slow)
        elif item.get_closest_marker("slow"):
            raise pytest.UsageError(
                f"{item.nodeid} is marked slow: move it to tests/integration (the marker follows the dir)"
            )


@pytest.fixture
def tiny_cfg(tmp_path: Path):
    """Factory: tiny_cfg(*overrides) -> a composed tiny job config writing into tmp_path/job."""

    def make(*overrides: str) -> DictConfig:
        return compose_train(tmp_path / "job", tiny_overrides(*overrides))

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture
def tiny_job(tiny_cfg):
    """Factory: tiny_job(*overrides) -> the lora_lab.job.build.BuiltJob that train.py would fit (regime applied)."""
    from lora_lab.job.build import build_job

    return lambda *overrides: build_job(tiny_cfg(*overrides))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    path = Path(os.environ.get("LORA_LAB_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    require_or_skip(path.is_dir(), f"real data not found at {path}; set LORA_LAB_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def served_jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three finished tiny jobs: LoRA on the sales notes (5 labels), LoRA on support tickets (3 labels,
    same base), and a full fine-tune (no adapter form: served from merged/)."""
    root = tmp_path_factory.mktemp("serve")
    rows = ["text,label"] + [f"{text} #{i},{label}" for i in range(40) for label, text in TICKETS.items()]
    (root / "tickets.csv").write_text("\n".join(rows) + "\n")
    return {
        "sales": finished_job(root / "sales", "regime=lora"),
        "tickets": finished_job(
            root / "tickets",
            "regime=lora",
            "dataset=csv",
            f"paths.data_dir={root}",  # an export names the CSV under LORA_LAB_DATA_DIR (export/portable.py)
            f"dataset.path={root / 'tickets.csv'}",
            "trainer.max_epochs=6",
        ),
        "full": finished_job(root / "full", "regime=full"),
    }
