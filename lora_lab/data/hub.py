"""Any Hugging Face datasets id (or a local dataset folder), for users who are online."""

from __future__ import annotations

from lora_lab.data.sources import Source
from lora_lab.data.splits import Split
from lora_lab.errors import DataError

HUB_SPLITS = {"train": "train", "validation": "validation", "test": "test"}


class HubDataset(Source):
    """`datasets.load_dataset(path, subset)` with column mapping; integer labels become their names."""

    def __init__(
        self,
        path: str,
        subset: str | None = None,
        text_column: str = "text",
        label_column: str = "label",
        revision: str | None = None,
        **split_args,
    ):
        super().__init__(**split_args)
        self.path, self.subset, self.revision = path, subset, revision
        self.text_column, self.label_column = text_column, label_column

    def read(self) -> dict[str, Split]:
        import datasets

        loaded = datasets.load_dataset(self.path, self.subset, revision=self.revision)
        out = {}
        for name, hub_name in HUB_SPLITS.items():
            if hub_name not in loaded:
                continue
            table = loaded[hub_name]
            for key, column in (("text_column", self.text_column), ("label_column", self.label_column)):
                if column not in table.column_names:
                    raise DataError(
                        f"{self.path}/{hub_name}: no column {column!r} (dataset.{key}); "
                        f"columns found: {table.column_names}"
                    )
            feature = table.features[self.label_column]
            names = getattr(feature, "names", None)  # a ClassLabel stores ints; report its names
            labels = [None if y is None else (names[y] if names else str(y)) for y in table[self.label_column]]
            out[name] = Split([t or "" for t in table[self.text_column]], labels)
        if "train" not in out:
            raise DataError(f"{self.path}: no 'train' split; found {list(loaded)}")
        return out
