"""``hf-parquet``: a HuggingFace image classification set as downloaded (``jobs.shard.parquetsource``).

The input is one ``.parquet`` file; a directory of them (the repository's ``data/train-00000-of-00004.parquet``,
``validation-…``, ``test-…``, or the repository root holding ``data/``), whose files ``split`` picks by their name's
prefix; or a ``datasets`` ``save_to_disk`` directory (``state.json``, ``dataset_info.json``, ``data-*.arrow``; a
``DatasetDict``'s holds one such directory per split, which ``split`` names). Files and labels are checked at submit
from the footers (a test split's ``label`` -1 is refused there); the listing reads only labels and paths.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.formats.base import ByteProgress, Fields, InputFormat, Key, visible
from clusterdeck.jobs.shard.sources import Entries

SHARD_NAME = re.compile(r"^(?P<split>.+?)-\d+-of-\d+(-[0-9a-f]+)?\.parquet$")
"""``train-00000-of-00004.parquet`` (older datasets append a hash); any other ``x.parquet`` is split ``x``."""
DATA_DIR = "data"
STATE, INFO, DICT = "state.json", "dataset_info.json", "dataset_dict.json"


@dataclass(frozen=True)
class HfInput:
    """What an ``hf-parquet`` input reads: parquet files, or Arrow files with their ``dataset_info.json``."""

    files: list[Path]
    info: Path | None = None  # set for a save_to_disk directory


def _parquet_files(folder: Path) -> list[str]:
    return sorted(name for name in visible(folder)[0] if name.lower().endswith(".parquet"))


def _is_saved(path: Path) -> bool:
    return (path / STATE).is_file() and (path / INFO).is_file()


def split_of(name: str) -> str:
    match = SHARD_NAME.match(name)
    return match.group("split") if match else name[: -len(".parquet")]


def resolve(path: Path, split: str | None) -> HfInput:
    """The files ``path`` and ``split`` select; UserError naming the key, with what there is to pick from."""
    if path.is_file():
        if split is not None:
            raise UserError(f"split: {path} is one file; split picks the files of a directory")
        return HfInput([path])
    if (path / DICT).is_file():
        splits = sorted(p.name for p in path.iterdir() if p.is_dir() and _is_saved(p))
        return _saved(path / _pick(path, split, splits), None)
    if _is_saved(path):
        return _saved(path, split)
    folder = path if _parquet_files(path) or not (path / DATA_DIR).is_dir() else path / DATA_DIR
    names = _parquet_files(folder)
    if not names:
        raise UserError(f"{path}: no .parquet files (nor {DATA_DIR}/*.parquet, nor a save_to_disk directory)")
    chosen = _pick(folder, split, sorted({split_of(n) for n in names}))
    return HfInput([folder / n for n in names if split_of(n) == chosen])


def _pick(folder: Path, split: str | None, splits: list[str]) -> str:
    if split is None and len(splits) == 1:
        return splits[0]
    if split is None:
        raise UserError(f"split: {folder} holds the splits {', '.join(splits)}: name one (split = {_likely(splits)!r})")
    if split not in splits:
        raise UserError(f"split: {folder} has no split {split!r}; it holds {', '.join(splits) or 'none'}")
    return split


def _likely(splits: list[str]) -> str:
    return "train" if "train" in splits else splits[0]


def _saved(path: Path, split: str | None) -> HfInput:
    """A ``save_to_disk`` Dataset directory: its Arrow files, in ``state.json``'s order."""
    if split is not None:
        raise UserError(f"split: {path} is one saved split; split picks a split of a DatasetDict or a directory")
    try:
        state = json.loads((path / STATE).read_text())
        files = [path / f["filename"] for f in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path / STATE}: not datasets' state.json with _data_files ({exc})") from None
    missing = [f for f in files if not f.is_file()]
    if missing or not files:
        raise UserError(f"{missing[0] if missing else path / STATE}: listed in state.json, but missing")
    return HfInput(files, path / INFO)


def _features(info: Path) -> dict[str, Any] | None:
    try:
        features = json.loads(info.read_text()).get("features")
    except (OSError, ValueError, AttributeError) as exc:
        raise UserError(f"{info}: not datasets' dataset_info.json ({exc})") from None
    return features if isinstance(features, dict) else None


class HfParquet(InputFormat):
    name = "hf-parquet"
    looks_like = "HuggingFace parquet files (data/<split>-*.parquet) or a save_to_disk directory"
    fields = ("split",)
    exportable = True

    def detect(self, path: Path) -> bool:
        if path.is_file():
            return path.name.lower().endswith(".parquet")
        if not path.is_dir():
            return False
        if (path / DICT).is_file() or _is_saved(path) or _parquet_files(path):
            return True
        return (path / DATA_DIR).is_dir() and bool(_parquet_files(path / DATA_DIR))

    def preflight(self, path: Path, fields: Fields) -> None:
        """At submit, not on every load of a spec (a job's nodes may not see the downloads): the files split
        picks, their footers and schema, and no test split (labels -1)."""
        from clusterdeck.jobs.shard.parquetsource import check_arrow_labels, check_parquet_labels

        found = resolve(path, fields.get("split"))
        for file in found.files:
            if found.info is None:
                check_parquet_labels(file)
            else:
                check_arrow_labels(file)

    def streamed(self, path: Path, fields: Fields) -> bool:
        """Parquet row groups are read whole; a save_to_disk directory's Arrow files are memory-mapped."""
        return not (path.is_dir() and ((path / DICT).is_file() or _is_saved(path)))

    def entries(self, path: Path, fields: Fields, cache: Path | None = None) -> Entries:
        from clusterdeck.jobs.shard.parquetsource import list_arrow, list_parquet

        found = resolve(path, fields.get("split"))
        if found.info is None:
            return list_parquet(found.files)
        return list_arrow(found.files, _features(found.info))

    def export_pool(self, root: Path, split: str, num_classes: int | None, key: Key) -> Any:
        """The samples of the files ``split`` picks (``val`` is HuggingFace's ``validation``; one file: itself)."""
        from clusterdeck.jobs.export.entries import entries_pool

        if split == "all":
            raise UserError(f"{key('split')}: name the part of {root} to export: 'train' or 'val' (its validation)")
        chosen = None if root.is_file() else {"val": "validation"}.get(split, split)
        try:
            entries = self.entries(root, {"split": chosen} if chosen else {})
        except UserError as exc:
            raise UserError(str(exc).replace("split:", f"{key('split')}:", 1)) from None
        return entries_pool(root, entries, self.name, num_classes, key)

    def inspect(
        self, path: Path, fields: Fields, verify: bool | str, progress: ByteProgress | None = None
    ) -> dict[str, Any]:
        """The listing's report; a parquet file's bytes are estimated from its footer (the column chunk sizes)."""
        from clusterdeck.jobs.formats.report import entries_report

        found = resolve(path, fields.get("split"))
        report = entries_report(path, self.name, self.entries(path, fields), classed=True)
        report["hf"] = {
            "files": len(found.files),
            "saved": found.info is not None,
            "bytes_estimated": found.info is None,
        }
        return report


FORMAT = HfParquet()
