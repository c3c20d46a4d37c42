"""A bag-of-words baseline as a Classifier: TF-IDF word and character n-grams + a linear model.

It has no transformer. Its tokens are characters: CodepointTokenizer turns a text into its
Unicode code points, so the job's own datamodule, length-grouped batches, Lightning test loop
and metrics score it like any other model, and forward() reads each row's raw text back
exactly (the pad id 0 is masked out). Features are scikit-learn's TfidfVectorizer; the linear
model is fitted by regimes/tfidf.py. Saved as JSON (settings, vocabularies in index order,
labels) + safetensors (idf, coefficients): nothing is pickled, and loading builds the
vectorizers from those files by the same code the job scored with, so a reloaded model
predicts exactly as the job did.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from torch import nn

from lora_lab.models.classifier import SPEC_FILE, Classifier

MODEL_FILE = "tfidf.json"
WEIGHTS_FILE = "tfidf.safetensors"
FORMAT = "lora_lab_tfidf"


class CodepointTokenizer:
    """The part of a Hugging Face tokenizer the datamodule uses: a text -> its code points.

    max_length counts characters here (data.max_length; conf/regime/tfidf.yaml sets it high
    enough to read whole texts). No vocabulary and no special tokens: every code point is its own id.
    """

    pad_token_id = 0
    special_tokens_map: dict[str, str] = {}

    def __call__(
        self,
        texts: Sequence[str],
        truncation: bool = False,
        max_length: int | None = None,
        add_special_tokens: bool = True,
        verbose: bool = True,
    ) -> dict[str, list[list[int]]]:
        end = max_length if truncation else None
        return {"input_ids": [[ord(c) for c in text[:end]] for text in texts]}

    def get_vocab(self) -> dict[str, int]:
        return {}  # the cache key's tokenizer identity: the class name alone

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 0

    def build_inputs_with_special_tokens(self, ids: list[int]) -> list[int]:
        return list(ids)

    def save_pretrained(self, out_dir: str) -> None:
        """Nothing to save: the tokenizer has no state."""


def decode(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]:
    """The texts of a padded batch of code points (right padding)."""
    lengths = attention_mask.sum(1).tolist()
    return ["".join(map(chr, row[:n])) for row, n in zip(input_ids.tolist(), lengths)]


def decode_rows(rows: Sequence[Sequence[int]]) -> list[str]:
    """The texts of unpadded code-point rows (a datamodule's tokenized split)."""
    return ["".join(map(chr, row)) for row in rows]


class TfidfClassifier(Classifier):
    """logits = tfidf(text) @ coef.T + intercept; empty (no features, no coefficients) until fit() or load()."""

    kind = "tfidf"
    peft_task_type = ""  # no transformer for PEFT to wrap
    external_head = True

    def __init__(self, id2label: dict[int, str]):
        super().__init__(nn.Identity(), id2label)
        # The fitted numbers are parameters, so params/trainable counts them; nothing steps on them.
        self.coef = nn.Parameter(torch.empty(0))
        self.intercept = nn.Parameter(torch.empty(0))
        self.settings: dict[str, dict[str, Any]] = {}  # feature name -> TfidfVectorizer keywords
        self.vocabularies: dict[str, list[str]] = {}
        self.idf: dict[str, np.ndarray] = {}
        self.info: dict[str, Any] = {}  # what the fit chose (C), saved with the model
        self._vectorizers: list[Any] = []

    def head(self) -> nn.ModuleDict:
        return nn.ModuleDict()  # the linear model is the whole classifier; coef/intercept are its own

    def is_head_parameter(self, name: str) -> bool:
        return True

    def spec(self) -> dict:
        return {**super().spec(), "model_file": MODEL_FILE}

    def set_model(
        self,
        settings: dict[str, dict[str, Any]],
        vocabularies: dict[str, list[str]],
        idf: dict[str, np.ndarray],
        coef: np.ndarray,
        intercept: np.ndarray,
        info: dict[str, Any],
    ) -> None:
        """Install a fitted model: what fit and load both end in, so the job and a reload score alike."""
        self.settings, self.vocabularies, self.idf, self.info = settings, vocabularies, idf, info
        self._vectorizers = build_vectorizers(settings, vocabularies, idf)
        # float32, as the transformers' weights: half the bytes, far finer than any accuracy difference.
        self.coef = nn.Parameter(torch.from_numpy(np.ascontiguousarray(coef, dtype=np.float32)))
        self.intercept = nn.Parameter(torch.from_numpy(np.ascontiguousarray(intercept, dtype=np.float32)))

    def features(self, texts: Sequence[str]) -> Any:
        if not self._vectorizers:
            raise RuntimeError(
                "TfidfClassifier is not fitted: regime=tfidf fits it in prepare(), load() reads a saved one"
            )
        return transform(self._vectorizers, texts)

    def scores(self, texts: Sequence[str]) -> torch.Tensor:
        """(n, labels) float32 logits of raw texts."""
        coef = self.coef.detach().cpu().numpy().astype(np.float64)
        z = np.asarray(self.features(texts) @ coef.T) + self.intercept.detach().cpu().numpy()
        logits = torch.from_numpy(z).float()
        if logits.shape[1] == 1:
            # Binary: scikit-learn fits one row, z = logit of label 1; (-z/2, z/2) has softmax
            # (1 - sigmoid(z), sigmoid(z)), its probabilities (as fitted_heads.logistic_regression_head).
            logits = torch.cat([-logits / 2, logits / 2], dim=1)
        return logits

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.scores(decode(input_ids, attention_mask)).to(input_ids.device)

    def save(self, out_dir: Path) -> None:
        """tfidf.json (settings, vocabularies, labels) + tfidf.safetensors (idf, coef, intercept)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        arrays = {f"idf.{name}": idf for name, idf in self.idf.items()}
        arrays |= {"coef": self.coef.detach().cpu().numpy(), "intercept": self.intercept.detach().cpu().numpy()}
        save_file(arrays, str(out_dir / WEIGHTS_FILE))
        model = {
            "format": FORMAT,
            "version": 1,
            "id2label": {str(k): v for k, v in self.id2label.items()},
            "features": self.settings,
            "vocabularies": self.vocabularies,
            **self.info,
        }
        (out_dir / MODEL_FILE).write_text(json.dumps(model, ensure_ascii=False))
        (out_dir / SPEC_FILE).write_text(json.dumps(self.spec(), indent=2))

    def load(self, in_dir: Path) -> None:
        """Read what save() wrote (JSON and safetensors only)."""
        model = json.loads((in_dir / MODEL_FILE).read_text())
        if model.get("format") != FORMAT:
            raise ValueError(f"{in_dir / MODEL_FILE}: not a lora_lab TF-IDF model (format {model.get('format')!r})")
        saved = {int(k): v for k, v in model["id2label"].items()}
        if saved != self.id2label:
            raise ValueError(f"{in_dir}: the model's labels {saved} are not the job's {self.id2label}")
        arrays = load_file(str(in_dir / WEIGHTS_FILE))
        settings = model.pop("features")
        info = {k: v for k, v in model.items() if k not in ("format", "version", "id2label", "vocabularies")}
        self.set_model(
            settings,
            model["vocabularies"],
            {name: arrays[f"idf.{name}"] for name in settings},
            arrays["coef"],
            arrays["intercept"],
            info,
        )


def fit_vectorizers(
    texts: Sequence[str], settings: dict[str, dict[str, Any]], min_df: int | float, max_features: int | None
) -> tuple[dict[str, list[str]], dict[str, np.ndarray]]:
    """Vocabulary (in index order) and idf of one TfidfVectorizer per feature kind, fitted on texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vocabularies, idf = {}, {}
    for name, kwargs in settings.items():
        vectorizer = TfidfVectorizer(
            **{**kwargs, "ngram_range": tuple(kwargs["ngram_range"])},
            min_df=min_df,
            max_features=max_features,
            dtype=np.float64,
        ).fit(texts)
        vocabularies[name] = list(vectorizer.get_feature_names_out())
        idf[name] = vectorizer.idf_
    return vocabularies, idf


def build_vectorizers(
    settings: dict[str, dict[str, Any]], vocabularies: dict[str, list[str]], idf: dict[str, np.ndarray]
) -> list[Any]:
    """Fitted TfidfVectorizers from their keywords, vocabularies and idf, without refitting."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # scikit-learn loads where it is used

    vectorizers = []
    for name, kwargs in settings.items():
        vectorizer = TfidfVectorizer(
            **{**kwargs, "ngram_range": tuple(kwargs["ngram_range"])},
            vocabulary={term: i for i, term in enumerate(vocabularies[name])},
            dtype=np.float64,
        )
        vectorizer.idf_ = idf[name]
        vectorizers.append(vectorizer)
    return vectorizers


def transform(vectorizers: Sequence[Any], texts: Sequence[str]) -> Any:
    """(n, features) scipy CSR matrix: each vectorizer's L2-normalised TF-IDF rows, side by side."""
    from scipy.sparse import hstack

    return hstack([v.transform(texts) for v in vectorizers], format="csr")
