"""How results reach the disk: metric values as they are computed, and whole result files.

`ResultStore`: each value is one JSON line {"sae", "metric", "seed", "value"} appended to
`results.jsonl` and flushed to disk, so a run killed at any moment (even kill -9) keeps every
finished value; a torn last line is ignored on reload. Values are keyed by (sae, metric, seed).

`write_json`: every other result file (report.json, model_outputs.json, run_log.json), written
whole through a temporary file and a rename, never with a NaN or an infinity.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["ResultStore", "write_json"]


class ResultStore:
    """Metric values of SAEs, persisted to `path` (JSON lines)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.values: dict[tuple[str, str, int], float] = {}
        if self.path.exists():
            raw = self.path.read_bytes()
            if raw and not raw.endswith(b"\n"):  # drop a line torn by a crash before appending
                with open(self.path, "r+b") as handle:
                    handle.truncate(raw.rfind(b"\n") + 1)
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                    key = (record["sae"], record["metric"], int(record["seed"]))
                    self.values[key] = float(record["value"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # a line torn by a crash
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a")

    def __contains__(self, key: tuple[str, str, int]) -> bool:
        return key in self.values

    def get(self, sae: str, metric: str, seed: int) -> float:
        return self.values[(sae, metric, seed)]

    def add_many(self, records: list[tuple[str, str, int, float]]) -> None:
        """Append values and make them durable before returning."""
        if not records:
            return
        lines = []
        for sae, metric, seed, value in records:
            self.values[(sae, metric, int(seed))] = float(value)
            lines.append(json.dumps({"sae": sae, "metric": metric, "seed": int(seed),
                                     "value": float(value)}, allow_nan=False))
        self._handle.write("\n".join(lines) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def write_json(path: str | Path, payload, *, sort_keys: bool = True,
               trailing_newline: bool = False) -> Path:
    """Write `payload` as JSON indented by 2 to `path` (parents created); returns the path.

    The text goes to a temporary file beside `path` that is then renamed over it, so a crash
    leaves the old file or the new one, never half of one. `sort_keys=False` keeps the
    payload's insertion order (which a report renders in); `trailing_newline` ends the file
    with a newline.

    Raises:
        ValueError: a NaN or infinite number in `payload` (a result never carries one).
    """
    path = Path(path)
    text = json.dumps(payload, indent=2, sort_keys=sort_keys, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text + ("\n" if trailing_newline else ""))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
