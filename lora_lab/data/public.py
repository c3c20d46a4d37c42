"""Public benchmark datasets read from the local data dir (`paths.data_dir`, env LORA_LAB_DATA_DIR).

Each Source reads the files as distributed (see ../shared/data/README.md for files, encodings
and the row counts to expect) and returns only the splits the dataset officially has;
`Source.load` carves the rest.
"""

from __future__ import annotations

import csv
import html
import re
from pathlib import Path

from lora_lab.data.sources import Source
from lora_lab.data.splits import Split
from lora_lab.errors import DataError


def missing_data_error(data_dir: Path, relative: str) -> DataError:
    """The one message for a data dir or file that is not there: where we looked and how to fix it."""
    where = data_dir if data_dir.is_absolute() else f"{data_dir} (= {data_dir.resolve()})"
    return DataError(
        f"no {relative} under {where} (paths.data_dir); set LORA_LAB_DATA_DIR or paths.data_dir=... "
        "to the folder holding the data (see ../shared/data/README.md)"
    )


class DataDirSource(Source):
    """A Source whose files live under `data_dir`; `name` defaults to the dataset's own."""

    default_name: str

    def __init__(self, data_dir: str, **split_args):
        super().__init__(**{"name": self.default_name, **split_args})
        self.data_dir = Path(data_dir).expanduser()

    def relative_files(self) -> list[str]:
        """The files this dataset reads, relative to data_dir."""
        raise NotImplementedError

    def files(self) -> list[Path]:
        # Their sizes and mtimes key the tokenized-data cache: a replaced file is a new dataset.
        return [self.data_dir / relative for relative in self.relative_files()]

    def file(self, relative: str) -> Path:
        """data_dir/relative, or the missing-data error if it is not a file."""
        path = self.data_dir / relative
        if not path.is_file():
            raise missing_data_error(self.data_dir, relative)
        return path


class Banking77(DataDirSource):
    """Banking77 intent detection (Casanueva et al., 2020): 77 intents, official train/test split."""

    default_name = "banking77"

    SPLITS = ("train", "test")

    def relative_files(self) -> list[str]:
        return [f"banking77/{split}.csv" for split in self.SPLITS]

    def read(self) -> dict[str, Split]:
        return {split: self._read_csv(relative) for split, relative in zip(self.SPLITS, self.relative_files())}

    def _read_csv(self, relative: str) -> Split:
        path = self.file(relative)
        # newline="" lets csv handle the CRLF rows and the quoted texts that span lines.
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and not {"text", "category"} <= set(rows[0]):
            raise DataError(f"{path}: expected columns text,category; found {list(rows[0])}")
        # 12 texts carry outer newlines/spaces (a copy-paste artefact), meaningless to a tokenizer.
        # Stripped, 4 train texts repeat another and 6 test texts equal a train text (the README's
        # "6 up to case and outer spaces"). A tokenizer saw them as equal unstripped too; kept as is.
        return Split([r["text"].strip() for r in rows], [r["category"].strip() for r in rows])


class FinancialPhraseBank(DataDirSource):
    """Financial PhraseBank v1.0 (Malo et al., 2014): 3-way sentiment of financial news sentences.

    `agreement` picks the annotator-agreement subset; no official split, so all rows are "train".
    """

    default_name = "financial_phrasebank"
    # file and encoding per agreement level, as the README declares them: only AllAgree is UTF-8.
    FILES = {
        "all": ("Sentences_AllAgree.txt", "utf-8"),
        "75": ("Sentences_75Agree.txt", "iso-8859-1"),
        "66": ("Sentences_66Agree.txt", "iso-8859-1"),
        "50": ("Sentences_50Agree.txt", "iso-8859-1"),
    }
    LABELS = ("positive", "neutral", "negative")

    def __init__(self, data_dir: str, agreement: str = "all", **split_args):
        super().__init__(data_dir, **split_args)
        agreement = str(agreement)  # a command-line agreement=75 arrives as an int
        if agreement not in self.FILES:
            raise DataError(f"dataset.agreement={agreement!r}: use one of {list(self.FILES)}")
        self.agreement = agreement

    def relative_files(self) -> list[str]:
        return [f"financial_phrasebank/{self.FILES[self.agreement][0]}"]

    def read(self) -> dict[str, Split]:
        encoding = self.FILES[self.agreement][1]
        path = self.file(self.relative_files()[0])
        texts, labels = [], []
        # Decode line by line so a bad byte is reported with its line number.
        for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as err:
                raise DataError(
                    f"{path}, line {number}: bytes at column {err.start} are not valid {encoding} "
                    "(the README declares this encoding for the file; is it the original?)"
                ) from err
            if not line.strip():
                continue
            # Split on the LAST '@': the label never contains one, a sentence might.
            sentence, sep, label = line.rpartition("@")
            label = label.strip()
            if not sep or label not in self.LABELS:
                raise DataError(f"{path}, line {number}: expected 'sentence@label' with label in {self.LABELS}")
            texts.append(sentence.strip())
            labels.append(label)
        return {"train": Split(texts, labels)}


class MultiDomainSentiment(DataDirSource):
    """Multi-Domain Sentiment (Blitzer et al., 2007), balanced part: Amazon reviews in 4 domains.

    Labels are positive/negative (from the file name); the domain is kept as `extra["domain"]`.
    No official split, so all rows are "train".
    """

    default_name = "multi_domain_sentiment"
    DOMAINS = ("books", "dvd", "electronics", "kitchen")
    LABELS = ("positive", "negative")

    # The files are pseudo-XML (raw '&', escaped markup inside texts), so an XML parser rejects
    # them: take each <review> block and the fields we need with non-greedy regexes instead.
    _REVIEW = re.compile(r"<review>(.*?)</review>", re.DOTALL)
    _FIELDS = {name: re.compile(rf"<{name}>(.*?)</{name}>", re.DOTALL) for name in ("title", "review_text")}
    # Escaped HTML inside texts (`&#60;br /&#62;`, `&lt;em>`) is a tag once unescaped: breaks become newlines,
    # inline formatting goes. Only these tag names: a bare '<' ("in <2 days") is text.
    _BREAK = re.compile(r"</?(?:br|p)\s*/?>", re.IGNORECASE)
    _INLINE = re.compile(r"</?(?:em|strong|b|i|u)>", re.IGNORECASE)

    def __init__(self, data_dir: str, domain: str = "all", use_title: bool = True, **split_args):
        super().__init__(data_dir, **split_args)
        if domain != "all" and domain not in self.DOMAINS:
            raise DataError(f"dataset.domain={domain!r}: use one of {[*self.DOMAINS, 'all']}")
        self.domains = self.DOMAINS if domain == "all" else (domain,)
        self.use_title = use_title

    def relative_files(self) -> list[str]:
        return [f"multi_domain_sentiment/{d}/{y}.review" for d, y in self._parts()]

    def _parts(self) -> list[tuple[str, str]]:
        return [(d, y) for d in self.domains for y in self.LABELS]

    def read(self) -> dict[str, Split]:
        # Resolve every file first: a partial mirror fails naming the missing file, before any parsing.
        paths = {part: self.file(relative) for part, relative in zip(self._parts(), self.relative_files())}
        texts, labels, domains = [], [], []
        for (domain, label), path in paths.items():
            for block in self._REVIEW.findall(_read_text(path)):
                texts.append(self._text(block))
                labels.append(label)
                domains.append(domain)
        return {"train": Split(texts, labels, {"domain": domains})}

    def _text(self, block: str) -> str:
        """The review as 'title. text' (or the text alone); "" if the block has none (load() drops it)."""
        fields = {}
        for name, pattern in self._FIELDS.items():
            match = pattern.search(block)
            fields[name] = self._clean(match.group(1)) if match else ""
        title, text = fields["title"], fields["review_text"]
        if not (self.use_title and title and text):
            return text
        # Titles often end in their own punctuation ("Big & Fast!"): do not add a second one.
        return f"{title} {text}" if title[-1] in ".!?" else f"{title}. {text}"

    def _clean(self, raw: str) -> str:
        # &quot; &#8217; ... -> characters; a raw '&' passes through unchanged. Twice, because one
        # three reviews are escaped twice ("&amp;quot;"); a second pass changes nothing elsewhere.
        text = html.unescape(html.unescape(raw))
        text = self._INLINE.sub("", self._BREAK.sub("\n", text))
        # U+FEFF (an escaped BOM opening one review) is invisible noise. ASCII SUB (0x1A) marks a
        # character lost upstream ("na\x1ave"), as U+FFFD does elsewhere: use one marker for both.
        return text.replace("\ufeff", "").replace("\x1a", "\ufffd").strip()


def _read_text(path: Path) -> str:
    """UTF-8, else Latin-1 (which decodes any byte).

    Found in the mirror: all eight .review files are valid UTF-8 (mostly ASCII). They already
    contain U+FFFD where non-ASCII letters were lost before distribution ("clich<U+FFFD>d":
    1,052 of them, mostly in dvd/ cast lists, which are not read) and ASCII SUB (0x1A) for 44
    more; 54 of the 8,000 title+text rows keep such a marker. Those letters cannot be recovered.
    The Latin-1 fallback is for other copies of the corpus that keep the original single-byte
    letters: they then load instead of failing.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")
