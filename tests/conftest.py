"""Shared fixtures: configs composed with Hydra's compose API, as `python -m lora_lab.train` would."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import lora_lab.config  # noqa: F401  (registers the resolvers)
from lora_lab.train import train
from tests.helpers import save_hydra_config

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# Tests never touch the user's cache: one fresh cache dir per test session.
os.environ["LORA_LAB_CACHE_DIR"] = tempfile.mkdtemp(prefix="lora_lab_test_cache_")

# A seconds-long job: tiny random BERT, a small synthetic set, one epoch, CSV logging.
TINY = [
    "backbone=tiny_bert",
    "dataset.n_per_class=30",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "data.batch_size=16",
]


def compose_train(output_dir: Path, overrides: list[str] = (), config_name: str = "train") -> DictConfig:
    """Compose conf/train.yaml with overrides and point the job at output_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


INTEGRATION = Path(__file__).resolve().parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The split is the marker: every test in tests/integration is `slow`, none in tests/unit is.
    `make test-fast` (-m "not slow") therefore runs exactly tests/unit."""
    for item in items:
        in_integration = INTEGRATION in Path(item.fspath).parents
        if in_integration:
            item.add_marker(pytest.mark.slow)
        elif item.get_closest_marker("slow"):
            raise pytest.UsageError(f"{item.nodeid} is marked slow: move it to tests/integration (the marker follows the dir)")


@pytest.fixture
def tiny_cfg(tmp_path: Path):
    """Factory: tiny_cfg(*overrides) -> a composed tiny job config writing into tmp_path/job."""

    def make(*overrides: str) -> DictConfig:
        base = TINY if not any(o.startswith("dataset=") for o in overrides) else [o for o in TINY if not o.startswith("dataset.")]
        return compose_train(tmp_path / "job", [*base, *overrides])

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture
def tiny_job(tiny_cfg):
    """Factory: tiny_job(*overrides) -> the lora_lab.build.Job that train.py would fit (regime applied)."""
    from lora_lab.build import build_job

    return lambda *overrides: build_job(tiny_cfg(*overrides))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    path = Path(os.environ.get("LORA_LAB_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"real data not found at {path}; set LORA_LAB_DATA_DIR")
    return path


# Three support-ticket intents, each a fixed wording: a tiny model learns them in three epochs.
TICKETS = {
    "billing": "my invoice shows a double charge on the card",
    "login": "cannot log in and the password reset link is broken",
    "refund": "please send my money back for the returned order",
}


def _finished_job(run_dir: Path, *overrides: str) -> Path:
    """A tiny job trained into run_dir as `python -m lora_lab.train` would (its .hydra/ config saved first)."""
    base = TINY if not any(o.startswith("dataset=") for o in overrides) else [o for o in TINY if not o.startswith("dataset.")]
    cfg = compose_train(run_dir, [*base, "regime.learning_rate=5e-3", *overrides])
    save_hydra_config(cfg, run_dir)
    train(cfg)
    GlobalHydra.instance().clear()
    return run_dir


@pytest.fixture(scope="session")
def served_jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three finished tiny jobs: LoRA on the sales notes (5 labels), LoRA on support tickets (3 labels,
    same base), and a full fine-tune (no adapter form: served from merged/)."""
    root = tmp_path_factory.mktemp("serve")
    rows = ["text,label"] + [f"{text} #{i},{label}" for i in range(40) for label, text in TICKETS.items()]
    (root / "tickets.csv").write_text("\n".join(rows) + "\n")
    return {
        "sales": _finished_job(root / "sales", "regime=lora"),
        "tickets": _finished_job(root / "tickets", "regime=lora", "dataset=csv", f"dataset.path={root / 'tickets.csv'}",
                                 "trainer.max_epochs=6"),
        "full": _finished_job(root / "full", "regime=full"),
    }
