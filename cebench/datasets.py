"""Contrastive-stories datasets (the GulkoA/contrastive-stories family) from local files.

Each row is a pair of stories about one subject: story A (``story1``) describes the subject in
its extreme "high" form, story B (``story2``) its exact opposite. Schemas, by their fields:

- ``v1``: story1, story2, subject, and optionally story0 (kept, not scored); subject words
  marked inline with ``<subject>...</subject>``.
- ``v2`` (and ``v3``, whose fields are the same; auto-detection says ``"v2"``): story1,
  story2, subject1, subject2, subject; no marking.
- ``v4`` (the paper's): story1, story2, subject1, subject2, subject_id (a Wikidata QID, may
  be null), subject_title; no marking.

Other fields are ignored.

v1 marks subject-related words inline with ``<subject>...</subject>``; we strip the tags and
keep the character spans ``[start, end)`` of the tagged words in the clean text (trimmed of
surrounding whitespace). `tokenize_dataset` maps those spans to tokens through the
tokenizer's offset mapping (never by matching strings): a token is marked iff its characters
overlap a marked span.

Sources (`load_contrastive_dataset`): ``.jsonl`` / ``.json`` (JSON Lines, or a JSON array of
objects), ``.parquet``, ``.arrow`` (a `datasets` Arrow file), or a directory written by
`datasets.Dataset.save_to_disk` / `datasets.DatasetDict.save_to_disk` (``split`` picks the
split), or else a local dataset-repository snapshot that `datasets.load_dataset(directory)`
reads (e.g. ``data/train-00000-of-00001.parquet``). JSON is parsed with Python's `json` so
that every row is checked as written (a columnar reader would coerce or reject mixed types
before we could name the row); the other formats are read with the `datasets` library, with a
temporary cache that is removed afterwards. Nothing is downloaded.

Every problem raises `ValueError` naming the source, the row index and the field.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, overload

import numpy as np

__all__ = [
    "SCHEMA_FIELDS",
    "ContrastiveRow",
    "ContrastiveDataset",
    "TokenizedStory",
    "TokenizedPair",
    "detect_schema",
    "parse_tagged_story",
    "format_tagged_story",
    "load_contrastive_dataset",
    "mark_tokens",
    "tokenize_dataset",
    "write_contrastive_dataset",
    "reference_v1_rows",
]

Span = tuple[int, int]

SCHEMA_FIELDS: dict[str, tuple[str, ...]] = {
    "v1": ("story1", "story2", "subject"),
    "v2": ("story1", "story2", "subject1", "subject2", "subject"),
    "v3": ("story1", "story2", "subject1", "subject2", "subject"),
    "v4": ("story1", "story2", "subject1", "subject2", "subject_id", "subject_title"),
}
"""Required fields of each schema. v1 may also hold ``story0``; other fields are ignored."""

_MARKED_SCHEMAS = frozenset({"v1"})
_TAG = "subject"
_TAG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_FINGERPRINT_VERSION = 1
_SUFFIXES = (".jsonl", ".json", ".parquet", ".arrow")


# ---------------------------------------------------------------------------------------------
# Tags


def _tag_pattern(tag: str) -> re.Pattern[str]:
    if not isinstance(tag, str) or not _TAG_NAME.fullmatch(tag):
        raise ValueError(f"tag must be a name like 'subject' (letters, digits, _.-), got {tag!r}")
    return re.compile(f"<(/?){re.escape(tag)}>")


def parse_tagged_story(text: str, tag: str = _TAG) -> tuple[str, tuple[Span, ...]]:
    """Strip ``<tag>...</tag>`` from `text`; return the clean text and the tagged spans in it.

    Spans are ``(start, end)`` character offsets into the clean text, half-open, in order,
    trimmed of surrounding whitespace, so ``clean[start:end]`` is the tagged text without
    leading or trailing spaces. Tags must be written exactly (``<subject>``, ``</subject>``);
    anything else is text.

    Args:
        text: a story with inline tags.
        tag: the tag name.

    Returns:
        ``(clean, spans)``; ``spans`` is empty when the text has no tags.

    Raises:
        ValueError: an unclosed tag, a stray closing tag, a tag opened inside another, or a
            tag with nothing (or only whitespace) inside; the message gives the character
            position in `text`.

    Examples:
        >>> parse_tagged_story("The <subject>dragon</subject> won.")
        ('The dragon won.', ((4, 10),))
        >>> clean, spans = parse_tagged_story(
        ...     "<subject>Victory</subject>, at <subject>long last</subject>!")
        >>> clean, [clean[s:e] for s, e in spans]
        ('Victory, at long last!', ['Victory', 'long last'])
        >>> parse_tagged_story("a <subject> bitter </subject>defeat")
        ('a  bitter defeat', ((3, 9),))
        >>> parse_tagged_story("no tags here")
        ('no tags here', ())
        >>> parse_tagged_story("a <subject>dragon")
        Traceback (most recent call last):
        ...
        ValueError: unclosed <subject> at character 2
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    pattern = _tag_pattern(tag)
    pieces: list[str] = []
    raw_spans: list[tuple[int, int, int]] = []  # (clean start, clean end, raw position)
    pos = 0
    clean_len = 0
    open_at: tuple[int, int] | None = None  # (clean offset, raw position) of the open tag
    for match in pattern.finditer(text):
        pieces.append(text[pos:match.start()])
        clean_len += match.start() - pos
        pos = match.end()
        if not match.group(1):
            if open_at is not None:
                raise ValueError(
                    f"nested <{tag}> at character {match.start()}: the <{tag}> opened at "
                    f"character {open_at[1]} is not closed"
                )
            open_at = (clean_len, match.start())
        else:
            if open_at is None:
                raise ValueError(f"stray </{tag}> at character {match.start()} closes no <{tag}>")
            raw_spans.append((open_at[0], clean_len, open_at[1]))
            open_at = None
    if open_at is not None:
        raise ValueError(f"unclosed <{tag}> at character {open_at[1]}")
    pieces.append(text[pos:])
    clean = "".join(pieces)
    spans = []
    for start, end, raw in raw_spans:
        while start < end and clean[start].isspace():
            start += 1
        while end > start and clean[end - 1].isspace():
            end -= 1
        if start == end:
            raise ValueError(f"empty <{tag}></{tag}> at character {raw}: nothing tagged inside")
        spans.append((start, end))
    return clean, tuple(spans)


def format_tagged_story(text: str, spans: Iterable[Span], tag: str = _TAG) -> str:
    """Insert ``<tag>...</tag>`` around `spans` of `text`: the inverse of `parse_tagged_story`.

    Args:
        text: clean text (without tags).
        spans: ``(start, end)`` character spans, in order, non-empty, not overlapping.
        tag: the tag name.

    Raises:
        ValueError: spans out of range, empty, unordered or overlapping.

    Examples:
        >>> format_tagged_story("The dragon won.", [(4, 10)])
        'The <subject>dragon</subject> won.'
        >>> parse_tagged_story(format_tagged_story("ab cd", [(0, 2), (3, 5)]))
        ('ab cd', ((0, 2), (3, 5)))
    """
    _tag_pattern(tag)
    spans = _checked_spans(spans, len(text), "spans")
    out: list[str] = []
    pos = 0
    for start, end in spans:
        out += [text[pos:start], f"<{tag}>", text[start:end], f"</{tag}>"]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _checked_spans(spans: Iterable[Span], length: int, what: str) -> tuple[Span, ...]:
    """Spans as a tuple of int pairs; in range, non-empty, ordered and disjoint."""
    out: list[Span] = []
    previous_end = 0
    for span in spans:
        if (not isinstance(span, (Sequence, np.ndarray)) or len(span) != 2
                or not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool)
                           for x in span)):
            raise ValueError(f"{what}: each span must be a pair of ints, got {span!r}")
        start, end = int(span[0]), int(span[1])
        if not 0 <= start < end <= length:
            raise ValueError(
                f"{what}: span {(start, end)} must satisfy 0 <= start < end <= {length}"
            )
        if start < previous_end:
            raise ValueError(f"{what}: span {(start, end)} overlaps or precedes the one before")
        out.append((start, end))
        previous_end = end
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Rows and datasets


@dataclass(frozen=True)
class ContrastiveRow:
    """One pair of stories about one subject, tags removed.

    Attributes:
        index: the row's position in its source (0-based).
        subject: what the stories are about (v1, v2: ``subject``; v4: ``subject_title``).
        story_a: story 1, the subject's "high" form; clean text.
        story_b: story 2, its exact opposite; clean text.
        marked_a: ``[(start, end), ...]`` character spans of tagged words in `story_a`
            (v1); empty for unmarked schemas.
        marked_b: the same for `story_b`.
        subject_a: v2/v4 ``subject1`` (the high pole's name), else None.
        subject_b: v2/v4 ``subject2`` (the low pole's name), else None.
        subject_id: v4 ``subject_id`` (a Wikidata QID), else None.
        story_0: v1 ``story0`` when present (clean text; kept, not scored), else None.
        marked_0: tagged spans of `story_0` (may be empty).
    """

    index: int
    subject: str
    story_a: str
    story_b: str
    marked_a: tuple[Span, ...] = ()
    marked_b: tuple[Span, ...] = ()
    subject_a: str | None = None
    subject_b: str | None = None
    subject_id: str | None = None
    story_0: str | None = None
    marked_0: tuple[Span, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise ValueError(f"index must be a non-negative int, got {self.index!r}")
        where = f"row {self.index}"
        for name in ("subject", "story_a", "story_b"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}: {name} must be a non-empty string, got {value!r}")
        for name in ("subject_a", "subject_b", "subject_id", "story_0"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{where}: {name} must be a str or None, got {value!r}")
        if self.story_0 is None and self.marked_0:
            raise ValueError(f"{where}: marked_0 given without story_0")
        for spans, story in (("marked_a", "story_a"), ("marked_b", "story_b"),
                             ("marked_0", "story_0")):
            text = getattr(self, story) or ""
            object.__setattr__(self, spans,
                               _checked_spans(getattr(self, spans), len(text), f"{where}: {spans}"))

    @property
    def is_marked(self) -> bool:
        """Whether both stories have marked spans."""
        return bool(self.marked_a) and bool(self.marked_b)

    def to_record(self, schema: str) -> dict[str, Any]:
        """The raw row in `schema`'s fields (tags re-inserted for v1); `write_contrastive_dataset`
        writes it and `load_contrastive_dataset` reads it back to an equal row."""
        _check_schema_name(schema)
        if schema in _MARKED_SCHEMAS:
            record: dict[str, Any] = {
                "story1": format_tagged_story(self.story_a, self.marked_a),
                "story2": format_tagged_story(self.story_b, self.marked_b),
                "subject": self.subject,
            }
            if self.story_0 is not None:
                record["story0"] = format_tagged_story(self.story_0, self.marked_0)
            return record
        record = {"story1": self.story_a, "story2": self.story_b,
                  "subject1": self.subject_a, "subject2": self.subject_b}
        if schema == "v4":
            record |= {"subject_id": self.subject_id, "subject_title": self.subject}
        else:
            record["subject"] = self.subject
        return record


@dataclass(frozen=True)
class ContrastiveDataset:
    """A validated contrastive-stories dataset: rows of one schema.

    Attributes:
        name: a label (by default the source's file or directory name); not part of the
            fingerprint.
        schema: ``"v1"``, ``"v2"``, ``"v3"`` or ``"v4"`` (see `SCHEMA_FIELDS`).
        rows: the rows, in source order. In a v1 dataset both stories of every row have
            marked spans; in the others no story has any.
    """

    name: str
    schema: str
    rows: tuple[ContrastiveRow, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValueError(f"name must be a str, got {self.name!r}")
        _check_schema_name(self.schema)
        rows = tuple(self.rows)
        object.__setattr__(self, "rows", rows)
        marked = self.schema in _MARKED_SCHEMAS
        for row in rows:
            if not isinstance(row, ContrastiveRow):
                raise ValueError(f"rows must be ContrastiveRow, got {type(row).__name__}")
            if marked and not row.is_marked:
                raise ValueError(f"row {row.index}: schema {self.schema} needs marked spans in "
                                 "both stories")
            if not marked and (row.marked_a or row.marked_b):
                raise ValueError(f"row {row.index}: schema {self.schema} has no marking, but the "
                                 "row has marked spans")

    @property
    def is_marked(self) -> bool:
        """Whether the schema marks subject words (v1)."""
        return self.schema in _MARKED_SCHEMAS

    @cached_property
    def fingerprint(self) -> str:
        """sha256 hex digest of the schema and every row's content (not `name`).

        A canonical JSON encoding of plain values, so it is the same in every process and
        on every machine: usable as an on-disk cache key.
        """
        payload = {
            "version": _FINGERPRINT_VERSION,
            "schema": self.schema,
            "rows": [
                [row.index, row.subject, row.story_a, row.story_b,
                 [list(s) for s in row.marked_a], [list(s) for s in row.marked_b],
                 row.subject_a, row.subject_b, row.subject_id, row.story_0,
                 [list(s) for s in row.marked_0]]
                for row in self.rows
            ],
        }
        encoded = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(encoded.encode("utf-8")).hexdigest()

    def select(self, positions) -> ContrastiveDataset:
        """The dataset of the rows at `positions` (in that order), under the same name."""
        return ContrastiveDataset(name=self.name, schema=self.schema,
                                  rows=tuple(self.rows[int(p)] for p in positions))

    def to_records(self) -> list[dict[str, Any]]:
        """The raw rows in this dataset's schema (see `ContrastiveRow.to_record`)."""
        return [row.to_record(self.schema) for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[ContrastiveRow]:
        return iter(self.rows)

    @overload
    def __getitem__(self, item: int) -> ContrastiveRow: ...
    @overload
    def __getitem__(self, item: slice) -> ContrastiveDataset: ...

    def __getitem__(self, item: int | slice) -> ContrastiveRow | ContrastiveDataset:
        """A row by position, or a slice as a dataset (rows keep their source indices)."""
        if isinstance(item, slice):
            return ContrastiveDataset(name=self.name, schema=self.schema, rows=self.rows[item])
        return self.rows[item]


def _check_schema_name(schema: str) -> None:
    if schema not in SCHEMA_FIELDS:
        raise ValueError(f"unknown schema {schema!r}; known schemas: {sorted(SCHEMA_FIELDS)}")


def detect_schema(columns: Iterable[str]) -> str:
    """The schema whose required fields `columns` hold (the most specific when several do).

    Raises:
        ValueError: no schema's fields are all present; names the closest schema and the
            fields it lacks.

    Examples:
        >>> detect_schema(["story0", "story1", "story2", "subject"])
        'v1'
        >>> detect_schema(["story1", "story2", "subject1", "subject2", "subject_id",
        ...                "subject_title"])
        'v4'
    """
    present = set(columns)
    # complete schemas first, then the most fields matched (v2 over v1, v4 over v1 when
    # subject_title is there), then the fewest missing, then table order
    def rank(item: tuple[str, tuple[str, ...]]) -> tuple[bool, int, int]:
        required = set(item[1])
        missing = len(required - present)
        return missing > 0, -len(required & present), missing

    ranked = sorted(SCHEMA_FIELDS.items(), key=rank)
    best, required = ranked[0]
    missing = [f for f in required if f not in present]
    if missing:
        raise ValueError(
            f"cannot detect the schema from the fields {sorted(present)}: the closest, "
            f"{best}, is missing required fields {missing}"
        )
    return best


# ---------------------------------------------------------------------------------------------
# Loading


def reference_v1_rows(dataset: ContrastiveDataset) -> list[int]:
    """Positions of the rows the reference's v1 code scores: it skips every row whose subject
    contains "relevance to " (Yusen-Peng/CE-Bench, utils/contrastive_eval.py).

    Raises:
        ValueError: no row is left.
    """
    kept = [p for p, row in enumerate(dataset.rows) if "relevance to " not in row.subject]
    if not kept:
        raise ValueError(f"every row of {dataset.name} has a 'relevance to ' subject, which v1 "
                         "skips: keep them (--keep-relevance-rows) to score them")
    return kept


def load_contrastive_dataset(
    source: str | Path,
    *,
    schema: str | None = None,
    limit: int | None = None,
    split: str = "train",
    name: str | None = None,
) -> ContrastiveDataset:
    """Read, validate and clean a contrastive-stories dataset from a local file or directory.

    Args:
        source: a ``.jsonl``/``.json``/``.parquet``/``.arrow`` file, a `save_to_disk`
            directory, or a local dataset-repository directory (see the module docstring).
        schema: ``"v1"``, ``"v2"``, ``"v3"`` or ``"v4"``; None detects it from the first row's
            fields (JSON) or the columns (other formats) with `detect_schema`.
        limit: keep only the first `limit` rows (>= 1); None keeps all.
        split: the split to read from a `DatasetDict` or dataset-repository directory;
            single files hold one split and ignore it.
        name: the dataset's label; default: the source's file stem or directory name.

    Returns:
        A `ContrastiveDataset` of ``min(limit, n_rows)`` rows.

    Raises:
        ValueError: a missing source, an unsupported file type, an unreadable file, an
            unknown schema or split, no rows, missing required fields (listed), a story that
            is not a non-empty string, a v1 story with no ``<subject>`` tag, or broken tags
            (unclosed, stray closing, nested, empty). Row problems name the row and field.
    """
    if schema is not None:
        _check_schema_name(schema)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    path = Path(source)
    if not path.exists():
        raise ValueError(f"dataset source {str(path)!r} does not exist")
    label = path.name
    records, columns = _read_records(path, split=split, limit=limit)
    if not records:
        raise ValueError(f"{label}: the dataset holds no rows")
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ValueError(f"{label}: row {index}: expected an object of fields, got "
                             f"{type(record).__name__}")
    if columns is None:  # JSON: the first row's fields decide, every row is checked below
        columns = list(records[0])
    if schema is None:
        try:
            schema = detect_schema(columns)
        except ValueError as err:
            raise ValueError(f"{label}: {err}") from None
    else:
        missing = [f for f in SCHEMA_FIELDS[schema] if f not in columns]
        if missing:
            raise ValueError(f"{label}: missing required fields {missing} for schema {schema} "
                             f"(fields found: {sorted(columns)})")
    rows = tuple(_parse_record(index, record, schema, label)
                 for index, record in enumerate(records))
    return ContrastiveDataset(name=path.stem if name is None else name, schema=schema, rows=rows)


def _parse_record(index: int, record: Any, schema: str, label: str) -> ContrastiveRow:
    """Validate one raw row and clean it into a `ContrastiveRow`."""
    where = f"{label}: row {index}"
    if not isinstance(record, Mapping):
        raise ValueError(f"{where}: expected an object of fields, got {type(record).__name__}")
    missing = [f for f in SCHEMA_FIELDS[schema] if f not in record]
    if missing:
        raise ValueError(f"{where}: missing required fields {missing} for schema {schema}")

    def text(key: str, what: str = "a non-empty string") -> str:
        value = record[key]
        if not isinstance(value, str):
            raise ValueError(f"{where}, field {key!r}: must be {what}, got "
                             f"{type(value).__name__} {value!r:.60}")
        if not value.strip():
            raise ValueError(f"{where}, field {key!r}: is empty (must be {what})")
        return value

    def tagged(key: str, required: bool) -> tuple[str, tuple[Span, ...]]:
        raw = text(key)
        try:
            clean, spans = parse_tagged_story(raw)
        except ValueError as err:
            raise ValueError(f"{where}, field {key!r}: {err}") from None
        if required and not spans:
            raise ValueError(f"{where}, field {key!r}: no <{_TAG}>...</{_TAG}> tag; schema "
                             f"{schema} marks the subject's words in both stories")
        if not clean.strip():
            raise ValueError(f"{where}, field {key!r}: is empty once tags are removed")
        return clean, spans

    if schema in _MARKED_SCHEMAS:
        story_a, marked_a = tagged("story1", required=True)
        story_b, marked_b = tagged("story2", required=True)
        story_0, marked_0 = None, ()
        value = record.get("story0")
        if not (value is None or (isinstance(value, str) and not value.strip())):
            story_0, marked_0 = tagged("story0", required=False)  # kept only; may be untagged
        return ContrastiveRow(index=index, subject=text("subject"), story_a=story_a,
                              story_b=story_b, marked_a=marked_a, marked_b=marked_b,
                              story_0=story_0, marked_0=marked_0)
    subject_id = None
    if schema == "v4":
        subject_id = record["subject_id"]
        if subject_id is not None and not isinstance(subject_id, str):
            raise ValueError(f"{where}, field 'subject_id': must be a string or null, got "
                             f"{type(subject_id).__name__} {subject_id!r:.60}")
    return ContrastiveRow(
        index=index,
        subject=text("subject_title" if schema == "v4" else "subject"),
        story_a=text("story1"),
        story_b=text("story2"),
        subject_a=text("subject1"),
        subject_b=text("subject2"),
        subject_id=subject_id,
    )


def _read_records(
    path: Path, *, split: str, limit: int | None
) -> tuple[list[Any], list[str] | None]:
    """Raw rows (the first `limit`) and, for columnar sources, the column names."""
    if path.is_dir():
        return _read_directory(path, split=split, limit=limit)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _read_json(path, limit=limit), None
    if suffix == ".parquet":
        import datasets

        with _datasets_scratch() as cache_dir:
            dataset = _call(path, "parquet", lambda: datasets.Dataset.from_parquet(
                str(path), cache_dir=cache_dir, keep_in_memory=True))
            return _dataset_records(dataset, limit)
    if suffix == ".arrow":
        import datasets

        dataset = _call(path, "datasets Arrow", lambda: datasets.Dataset.from_file(
            str(path), in_memory=True))
        return _dataset_records(dataset, limit)
    raise ValueError(f"unsupported file type {path.suffix!r} for {path.name!r}; supported: "
                     f"{', '.join(_SUFFIXES)} files, or a directory written by save_to_disk")


def _read_directory(path: Path, *, split: str, limit: int | None) -> tuple[list[Any], list[str]]:
    import datasets

    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        loaded = _call(path, "save_to_disk", lambda: datasets.load_from_disk(str(path)))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"{path.name}: no split {split!r}; available: {sorted(loaded)}")
            loaded = loaded[split]
        return _dataset_records(loaded, limit)
    if not any(p.suffix.lower() in _SUFFIXES for p in path.rglob("*") if p.is_file()):
        raise ValueError(f"{path.name}: the directory holds no dataset (no save_to_disk "
                         f"files, no {', '.join(_SUFFIXES)} files)")
    with _datasets_scratch() as cache_dir:
        dataset = _call(path, "dataset repository", lambda: datasets.load_dataset(
            str(path.resolve()), split=split, cache_dir=cache_dir, keep_in_memory=True))
        return _dataset_records(dataset, limit)


def _read_json(path: Path, *, limit: int | None) -> list[Any]:
    """Rows of a JSON Lines file, or of a JSON file holding an array of objects."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path.name}: cannot read: {err}") from None
    if path.suffix.lower() == ".json":
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # not one JSON value: read it as JSON Lines below
        if isinstance(whole, list):
            return whole[:limit] if limit is not None else whole
        if isinstance(whole, dict):  # a single row
            return [whole]
    rows = []
    for line_number, line in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028
        if not line.strip():
            continue
        if limit is not None and len(rows) >= limit:
            break
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path.name}: line {line_number} (row {len(rows)}) is not valid "
                             f"JSON: {err}") from None
    return rows


def _dataset_records(dataset: Any, limit: int | None) -> tuple[list[Any], list[str]]:
    if limit is not None and limit < len(dataset):
        dataset = dataset.select(range(limit))
    return dataset.to_list(), list(dataset.column_names)


def _call(path: Path, kind: str, read: Any) -> Any:
    """Run a `datasets` reader; its failures become ValueErrors naming the source."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        return read()
    except Exception as err:  # noqa: BLE001 (arrow, fsspec and datasets raise many types)
        raise ValueError(f"{path.name}: cannot read as {kind}: "
                         f"{type(err).__name__}: {err}") from err
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


@contextmanager
def _datasets_scratch() -> Iterator[str]:
    """A temporary cache directory for `datasets` builders, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="cebench-datasets-") as cache_dir:
        yield cache_dir


def write_contrastive_dataset(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write raw rows (dicts in any schema, unvalidated) to ``.jsonl``, ``.json`` or ``.parquet``.

    For tests and demos: rows are written as given (so bad rows can be written too); the
    format follows the suffix. Parent directories are created.

    Returns:
        The path written.

    Raises:
        ValueError: rows that are not mappings, or an unsupported suffix.
    """
    path = Path(path)
    rows = list(rows)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"rows[{i}] must be a mapping of fields, got {type(row).__name__}")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".parquet"):
        raise ValueError(f"unsupported suffix {path.suffix!r} for {path.name!r}; "
                         "use .jsonl, .json or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".jsonl":
        lines = [json.dumps(dict(row), ensure_ascii=False) + "\n" for row in rows]
        path.write_text("".join(lines), encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps([dict(row) for row in rows], ensure_ascii=False, indent=1),
                        encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([dict(row) for row in rows]), path)
    return path


# ---------------------------------------------------------------------------------------------
# Tokenization


@dataclass(frozen=True, eq=False)
class TokenizedStory:
    """One story's tokens (no special tokens) and which of them are marked.

    Attributes:
        input_ids: int64 ``[n_tokens]`` token ids.
        marked: bool ``[n_tokens]``; True where the token's characters overlap a marked span.

    Both arrays are read-only.
    """

    input_ids: np.ndarray
    marked: np.ndarray

    def __post_init__(self) -> None:
        ids = np.array(self.input_ids, dtype=np.int64, copy=True)
        marked = np.array(self.marked, dtype=bool, copy=True)
        if ids.ndim != 1 or marked.shape != ids.shape:
            raise ValueError(f"input_ids and marked must both have shape [n_tokens], got "
                             f"{ids.shape} and {marked.shape}")
        ids.setflags(write=False)
        marked.setflags(write=False)
        object.__setattr__(self, "input_ids", ids)
        object.__setattr__(self, "marked", marked)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass(frozen=True, eq=False)
class TokenizedPair:
    """A tokenized dataset row.

    Attributes:
        row: the row's `ContrastiveRow.index`.
        subject: the row's subject.
        a: story A (story1), tokenized.
        b: story B (story2), tokenized.
    """

    row: int
    subject: str
    a: TokenizedStory
    b: TokenizedStory


def mark_tokens(offsets: np.ndarray, spans: Iterable[Span]) -> np.ndarray:
    """Which tokens overlap a marked character span.

    Token t, with character offsets ``[s_t, e_t)``, is marked iff some span ``[a, b)`` has
    ``s_t < b and a < e_t``; a zero-width token (``s_t == e_t``) is then marked iff it lies
    strictly inside a span (``a < s_t < b``).

    Args:
        offsets: int ``[n_tokens, 2]`` character offsets, as a fast tokenizer's
            ``offset_mapping`` gives them.
        spans: ``(start, end)`` character spans.

    Returns:
        bool ``[n_tokens]``.

    Examples:
        >>> mark_tokens(np.array([[0, 3], [3, 10], [10, 14]]), [(4, 10)]).tolist()
        [False, True, False]
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    spans = np.asarray(list(spans), dtype=np.int64).reshape(-1, 2)
    if offsets.shape[0] == 0 or spans.shape[0] == 0:
        return np.zeros(offsets.shape[0], dtype=bool)
    overlap = ((offsets[:, None, 0] < spans[None, :, 1])
               & (spans[None, :, 0] < offsets[:, None, 1]))
    return overlap.any(axis=1)


def tokenize_dataset(
    dataset: ContrastiveDataset,
    tokenizer: Any,
    *,
    max_tokens: int | None = None,
) -> list[TokenizedPair]:
    """Tokenize both stories of every row and mark the tokens of tagged words.

    Each story is tokenized alone with ``add_special_tokens=False`` and
    ``return_offsets_mapping=True`` (BOS is the activation pipeline's job); marks come from
    the offsets (`mark_tokens`), never from matching strings, so a word split into several
    tokens marks them all, and punctuation next to a tag stays unmarked unless a token joins
    it to the tagged word. Stories longer than `max_tokens` keep their first `max_tokens`
    tokens; a v1 story may lose some marked spans that way, but not all.

    Args:
        dataset: the rows.
        tokenizer: a fast (Rust-backed) Hugging Face tokenizer; offsets need one.
        max_tokens: truncate each story to this many tokens (>= 1); None keeps all.

    Returns:
        One `TokenizedPair` per row, in order; ``input_ids`` int64 ``[n_tokens]`` and
        ``marked`` bool ``[n_tokens]`` per story.

    Raises:
        ValueError: a slow tokenizer, a bad `max_tokens`, a story with zero tokens, a story
            with a word the tokenizer maps to its unknown token, or a story with marked spans
            none of whose tokens survives tokenization and truncation (the message names the
            row and story).
    """
    if not isinstance(dataset, ContrastiveDataset):
        raise ValueError(f"dataset must be a ContrastiveDataset, got {type(dataset).__name__}")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("tokenizer must be a fast (tokenizers-backed) tokenizer: marking tokens "
                         "needs offset mappings")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                   or max_tokens < 1):
        raise ValueError(f"max_tokens must be a positive int or None, got {max_tokens!r}")
    if len(dataset) == 0:
        return []
    # a word-level tokenizer maps unknown words to its unk token: scoring those would
    # silently read one shared embedding in their place
    unk_id = getattr(tokenizer, "unk_token_id", None)
    texts = [story for row in dataset for story in (row.story_a, row.story_b)]
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True,
                        return_attention_mask=False, return_token_type_ids=False, verbose=False)
    pairs = []
    for i, row in enumerate(dataset):
        stories = []
        for k, (label, spans) in enumerate((("a", row.marked_a), ("b", row.marked_b))):
            ids = np.asarray(encoded["input_ids"][2 * i + k], dtype=np.int64)
            offsets = np.asarray(encoded["offset_mapping"][2 * i + k], dtype=np.int64)
            if ids.shape[0] == 0:
                raise ValueError(f"row {row.index}, story {label}: the tokenizer gives no tokens")
            if unk_id is not None and (ids == unk_id).any():
                text = row.story_a if label == "a" else row.story_b
                start, end = offsets[int(np.flatnonzero(ids == unk_id)[0])]
                raise ValueError(f"row {row.index}, story {label}: {text[start:end]!r} is "
                                 "outside the tokenizer's vocabulary (it tokenizes to the "
                                 "unknown token)")
            truncated = max_tokens is not None and ids.shape[0] > max_tokens
            if truncated:
                ids, offsets = ids[:max_tokens], offsets[:max_tokens]
            marked = mark_tokens(offsets, spans)
            if spans and not marked.any():
                cause = (f"truncation to max_tokens={max_tokens}" if truncated
                         else "tokenization")
                raise ValueError(f"row {row.index}, story {label}: {len(spans)} marked span(s) "
                                 f"but no marked token survives {cause}")
            stories.append(TokenizedStory(input_ids=ids, marked=marked))
        pairs.append(TokenizedPair(row=row.index, subject=row.subject, a=stories[0],
                                   b=stories[1]))
    return pairs
