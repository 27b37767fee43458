"""Every template in templates/ is a valid spec once its $IMAGENET_* paths point at real data."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.spec import load_spec
from tests.conftest import REPO

TEMPLATES = sorted((REPO / "templates").glob("*.toml"))


def test_there_are_templates() -> None:
    assert len(TEMPLATES) >= 3


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_template_validates(template: Path, sample_data, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("IMAGENET_ROOT", str(tmp_path / "imagenet"))
    monkeypatch.setenv("IMAGENET_DEVKIT", str(sample_data.root))
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    (tmp_path / "imagenet").symlink_to(sample_data.root)
    spec = load_spec(template)
    assert spec.name
    assert spec.steps
    if spec.shard is not None:
        assert spec.shard.resources.cpus_per_task >= 1
