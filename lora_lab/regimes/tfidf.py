"""TF-IDF bag-of-words baseline: word and character n-gram TF-IDF features + multinomial logistic
regression (scikit-learn), fitted in seconds on the training rows' raw texts. No transformer:
the backbone is ignored (neither its weights nor its tokenizer load); the job's datamodule serves
code points (models/tfidf.py says why), and prepare() fits the model, picking C on validation.

Every comparison should hold this row: a fine-tune that does not beat it beyond noise is not
worth its compute (the report marks those). Its whole model is saved in tfidf/ (JSON +
safetensors), not adapter/ or merged/: there is no transformer to add it to or merge it into.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from lora_lab.errors import ConfigError
from lora_lab.models.classifier import Classifier
from lora_lab.models.fitted_heads import fit_logistic_regression, over_all_labels
from lora_lab.models.tfidf import (
    CodepointTokenizer,
    TfidfClassifier,
    build_vectorizers,
    decode_rows,
    fit_vectorizers,
    transform,
)
from lora_lab.regimes.base import Regime

if TYPE_CHECKING:
    from lora_lab.data.datamodule import TextClassificationDataModule
    from lora_lab.models.backbones import Backbone

log = logging.getLogger(__name__)


class Tfidf(Regime):
    trains_by_gradient = False
    adapter_dir: ClassVar[str] = "tfidf"

    def __init__(
        self,
        name: str,
        learning_rate: float,
        word_ngram_range: Sequence[int] | None = (1, 2),
        char_ngram_range: Sequence[int] | None = (2, 5),
        min_df: int | float = 2,
        max_features: int | None = None,
        sublinear_tf: bool = True,
        C: float | Sequence[float] = (1.0, 10.0, 100.0),
        max_iter: int = 1000,
        max_length: int | None = None,  # read by data.max_length (conf/train.yaml): characters here
        seed: int = 0,
        head_learning_rate: float | None = None,
    ):
        super().__init__(name, learning_rate, head_learning_rate)
        ranges = {"word": ("word", word_ngram_range), "char": ("char_wb", char_ngram_range)}
        for kind, (_, bounds) in ranges.items():
            if bounds is not None and not _ngram_range(bounds):
                raise ConfigError(
                    f"regime.{kind}_ngram_range={_show(bounds)}: use [shortest, longest] n-gram lengths, "
                    f"whole numbers with 1 <= shortest <= longest, e.g. [1, 2]; or null to leave {kind} n-grams out"
                )
        if word_ngram_range is None and char_ngram_range is None:
            raise ConfigError(
                "regime.word_ngram_range and regime.char_ngram_range are both null: keep at least one feature kind"
            )
        if not (_whole(min_df) and min_df >= 1 or isinstance(min_df, float) and 0 < min_df < 1):
            raise ConfigError(
                f"regime.min_df={min_df!r}: a term's fewest training rows (a whole number >= 1) "
                "or share of rows (in (0, 1)), e.g. regime.min_df=2"
            )
        if max_features is not None and not (_whole(max_features) and max_features >= 1):
            raise ConfigError(
                f"regime.max_features={max_features!r}: a positive whole number per feature kind, or null for all"
            )
        grid = [C] if isinstance(C, (int, float)) else list(C)
        if not grid or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 for c in grid):
            raise ConfigError(
                f"regime.C={_show(C)}: a positive inverse regularisation strength or a list of them "
                "(validation picks one), e.g. regime.C=10 or regime.C=[1,10,100]"
            )
        if not (_whole(max_iter) and max_iter >= 1):
            raise ConfigError(f"regime.max_iter={max_iter!r}: a positive whole number of solver iterations, e.g. 1000")
        if not isinstance(sublinear_tf, bool):
            raise ConfigError(f"regime.sublinear_tf={sublinear_tf!r}: true or false")
        # TfidfVectorizer keywords per feature kind, saved with the model; lowercase, token pattern
        # and norm are scikit-learn's defaults, written out so a later default cannot change a reload.
        self.features = {
            kind: {
                "analyzer": analyzer,
                "ngram_range": list(bounds),
                "lowercase": True,
                "sublinear_tf": sublinear_tf,
                "token_pattern": r"(?u)\b\w\w+\b",
                "norm": "l2",
            }
            for kind, (analyzer, bounds) in ranges.items()
            if bounds is not None
        }
        self.min_df, self.max_features, self.grid, self.max_iter, self.seed = min_df, max_features, grid, max_iter, seed

    def tokenizer(self, backbone: Backbone) -> CodepointTokenizer:
        return CodepointTokenizer()

    def build_classifier(self, backbone: Backbone, id2label: dict[int, str], seed: int = 0) -> Classifier:
        return TfidfClassifier(id2label)

    def apply(self, classifier: Classifier) -> None:
        if not isinstance(classifier, TfidfClassifier):
            raise TypeError(
                "regime tfidf fits its own TfidfClassifier (regime.build_classifier), "
                f"not a {type(classifier).__name__}"
            )

    def prepare(self, classifier: Classifier, datamodule: TextClassificationDataModule) -> None:
        """Fit on the datamodule's training rows, C picked on its validation rows (code points read back as texts)."""
        assert isinstance(classifier, TfidfClassifier)
        train, val = datamodule.tokenized["train"], datamodule.tokenized["validation"]
        self.fit(classifier, decode_rows(train.input_ids), train.labels, decode_rows(val.input_ids), val.labels)

    def fit(
        self,
        classifier: TfidfClassifier,
        texts: Sequence[str],
        labels: Sequence[int],
        val_texts: Sequence[str],
        val_labels: Sequence[int],
    ) -> None:
        """Fit the features on the training texts, then one logistic regression per C; keep the
        one with the best validation accuracy (ties: the smaller C, the more regularised). The
        stacked model (job/stacking.py) calls this with raw texts; prepare() with the job's rows."""
        y_train, y_val = np.asarray(labels), np.asarray(val_labels)
        present = np.unique(y_train)
        if len(present) < 2:
            raise ValueError(
                f"the training rows hold {len(present)} label(s); TF-IDF + logistic regression needs two or more "
                "(raise train_rows, or check the dataset's label column)"
            )
        if len(present) < len(classifier.id2label):
            # A small train_rows can leave labels without a row (64 rows of Banking77's 77 labels): those
            # are never predicted (models/fitted_heads.over_all_labels).
            log.warning(
                "tfidf: %d of %d labels have no training row; the model never predicts them",
                len(classifier.id2label) - len(present),
                len(classifier.id2label),
            )
        vocabularies, idf = fit_vectorizers(texts, self.features, self.min_df, self.max_features)
        vectorizers = build_vectorizers(self.features, vocabularies, idf)  # as the classifier will build them
        x_train, x_val = transform(vectorizers, texts), transform(vectorizers, val_texts)
        best: tuple[float, Any, float] | None = None
        for C in sorted(self.grid):
            model = fit_logistic_regression(x_train, y_train, C, self.max_iter, self.seed)
            acc = float((model.predict(x_val) == y_val).mean())
            log.info("tfidf: C=%g, %d features: validation accuracy %.4f", C, x_train.shape[1], acc)
            if best is None or acc > best[0]:
                best = (acc, model, C)
        assert best is not None
        _, model, C = best
        info = {"C": C, "C_grid": self.grid, "min_df": self.min_df, "max_features": self.max_features}
        coef, intercept = over_all_labels(model, len(classifier.id2label))
        classifier.set_model(self.features, vocabularies, idf, coef, intercept, info)

    def save_adapter(self, classifier: Classifier, out_dir: Path) -> None:
        assert isinstance(classifier, TfidfClassifier)
        classifier.save(out_dir)

    def load_adapter(self, classifier: Classifier, adapter_dir: Path) -> None:
        assert isinstance(classifier, TfidfClassifier)
        classifier.load(adapter_dir)

    def can_merge(self, classifier: Classifier) -> bool:
        return False  # no transformer to merge into: tfidf/ is the whole model


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ngram_range(bounds: object) -> bool:
    values = list(bounds) if isinstance(bounds, Sequence) and not isinstance(bounds, str) else []
    return len(values) == 2 and all(_whole(v) for v in values) and 1 <= values[0] <= values[1]


def _show(value: object) -> str:
    """A config value as the user wrote it: OmegaConf lists print as [1, 2], not ListConfig."""
    return str(list(value)) if isinstance(value, Sequence) and not isinstance(value, str) else repr(value)
