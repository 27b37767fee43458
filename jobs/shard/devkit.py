"""The ILSVRC2012 devkit: class order (``data/meta.mat``) and val labels (the ground-truth file beside it).

Read as torchvision's ``datasets.imagenet.parse_meta_mat`` and ``parse_val_groundtruth_txt``
read them (leaf synsets by ILSVRC2012_ID; one ID per line), straight from the
``ILSVRC2012_devkit_t12.tar.gz`` archive or its extracted directory, without importing
torch, so ``inspect`` and the CLI stay fast.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.shard.sources import ValLabels, parse_ground_truth, read_text, synsets_from_meta_mat

META = "data/meta.mat"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"


def read_devkit(path: Path) -> ValLabels:
    if path.is_dir():
        for needed in (META, GROUND_TRUTH):
            if not (path / needed).is_file():
                raise UserError(f"{path}: no {needed} (expected the extracted ILSVRC2012 devkit)")
        wnids = synsets_from_meta_mat(path / META)
        text = read_text(path / GROUND_TRUTH)
        return ValLabels(wnids, parse_ground_truth(text, str(path / GROUND_TRUTH), len(wnids)), Path(GROUND_TRUTH).name)
    try:
        with tarfile.open(path) as tar:
            files = [m for m in tar.getmembers() if m.isfile()]
            blobs: dict[str, bytes] = {}
            for needed in (META, GROUND_TRUTH):
                member = next((m for m in files if m.name == needed or m.name.endswith("/" + needed)), None)
                extracted = tar.extractfile(member) if member is not None else None
                if extracted is None:
                    raise UserError(f"{path}: no <devkit>/{needed} inside (expected ILSVRC2012_devkit_t12.tar.gz)")
                blobs[needed] = extracted.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: not a readable devkit archive ({first_line})") from None
    wnids = synsets_from_meta_mat(io.BytesIO(blobs[META]), f"{path}:{META}")
    try:
        text = blobs[GROUND_TRUTH].decode()
    except UnicodeDecodeError:
        raise UserError(f"{path}:{GROUND_TRUTH}: not a text file") from None
    truth = parse_ground_truth(text, f"{path}:{GROUND_TRUTH}", len(wnids))
    return ValLabels(wnids, truth, Path(GROUND_TRUTH).name)
