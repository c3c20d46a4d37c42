"""python -m lora_lab.serve adapters.sales=outputs/<date>/<time> adapters.intents=<dir> host=127.0.0.1 port=8000"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from lora_lab.cli.errors import checks_group_choices, report_user_errors
from lora_lab.cli.run import quoted_pick
from lora_lab.config import CONF_DIR
from lora_lab.errors import ConfigError, check_positive_int

log = logging.getLogger(__name__)


def serve(cfg: DictConfig) -> None:
    """Check the settings, then run uvicorn until interrupted (the app loads the models at start-up)."""
    for key in ("max_batch_size", "max_queue", "max_text_chars", "max_texts_per_request", "port"):
        check_positive_int(key, cfg[key])
    if cfg.drain_seconds < 0:
        raise ConfigError(f"drain_seconds={cfg.drain_seconds}: must be >= 0 (how long SIGTERM waits for requests)")
    if cfg.max_wait_ms < 0:
        raise ConfigError(f"max_wait_ms={cfg.max_wait_ms}: must be >= 0 (0: no waiting for other requests)")
    if not cfg.adapters:
        raise ConfigError(
            "no adapters to serve: pass adapters.<name>=<job, export or sweep dir>, e.g. "
            "adapters.sales=outputs/2026-12-01/10-00-00-000000 (more can be PUT at /v1/adapters/<name>)"
        )
    # Here, not at the top: the server's libraries (torch, transformers, peft, fastapi) load to serve, not for --help.
    from lora_lab.serve.app import Settings, create_app
    from lora_lab.serve.auth import check_exposure, read_admin_token, read_api_tokens
    from lora_lab.serve.drain import serve_until_drained
    from lora_lab.serve.engine import resolve_precision
    from lora_lab.serve.sources import resolve_source

    admin_token = read_admin_token(cfg.admin_token_file)
    check_exposure(cfg.host, cfg.management, admin_token)
    for root in cfg.adapter_roots:
        if not Path(root).expanduser().is_dir():
            raise ConfigError(f"adapter_roots: {root} is not a directory; list the dirs PUT may load from")
    resolve_precision(cfg.precision, cfg.quantize)  # refused here, before the server starts
    promote_sweeps(cfg)
    for path in cfg.adapters.values():
        resolve_source(path)  # a wrong path fails here, in a second, not after the first models loaded
    settings = Settings(
        **{k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k in Settings.__dataclass_fields__},
    )
    settings.admin_token, settings.api_tokens = admin_token, read_api_tokens(cfg.api_tokens_file)
    serve_until_drained(create_app(settings), cfg.host, cfg.port, cfg.drain_seconds)


def promote_sweeps(cfg: DictConfig) -> None:
    """Each adapters.<name> that is a sweep dir becomes the job `pick` chooses (job/pick.py), logged
    with its trial and figures; a constraint with no sweep among the adapters is refused."""
    from lora_lab.job.pick import is_sweep_dir, promote

    sweeps = {name: Path(path) for name, path in cfg.adapters.items() if is_sweep_dir(Path(path))}
    if not sweeps:
        promote(Path(next(iter(cfg.adapters.values()))), cfg.pick)  # pick=best passes; a constraint is refused
    for name, path in sweeps.items():
        job_dir, pick = promote(path, cfg.pick)
        log.info("adapters.%s: %s", name, pick.describe(cfg.pick))
        cfg.adapters[name] = str(job_dir)


@checks_group_choices(CONF_DIR)
@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="serve")
@report_user_errors
def main(cfg: DictConfig) -> None:
    serve(cfg)


def adapters_as_new_keys(argv: list[str]) -> list[str]:
    """`adapters.sales=<dir>` as `+adapters.sales=<dir>`: each name is a new key of the empty
    `adapters` map, which Hydra's struct mode only lets in with a `+`; users need not know that."""
    return [f"+{a}" if re.match(r"adapters\.[^=]+=", a) else a for a in argv]


def run() -> None:
    """The command line (python -m lora_lab.serve, lora-lab-serve)."""
    if any(re.match(r"\+*(admin_token|api_tokens)=", a) for a in sys.argv[1:]):
        print(
            "error: tokens are never read from the command line (ps and shell histories show it): set "
            "LORA_LAB_ADMIN_TOKEN / LORA_LAB_API_TOKENS, or admin_token_file= / api_tokens_file=<file>",
            file=sys.stderr,
        )
        sys.exit(2)
    sys.argv = [sys.argv[0], *quoted_pick(adapters_as_new_keys(sys.argv[1:]))]
    main()


if __name__ == "__main__":
    run()
