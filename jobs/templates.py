"""Run templates: the project's own (``templates/``) and the user's (``$CLUSTERDECK_HOME/templates``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.specfile import read_table

BUILT_IN = Path(__file__).resolve().parent.parent / "templates"


def user_templates_dir() -> Path:
    home = os.environ.get("CLUSTERDECK_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".clusterdeck") / "templates"


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    source: Literal["built-in", "yours"]

    def table(self) -> dict[str, Any]:
        return read_table(self.path)

    def comment(self) -> str:
        """The template's leading comment lines: what it is for and which variables it needs."""
        lines = []
        try:
            with self.path.open() as f:
                for line in f:
                    if not line.startswith("#"):
                        break
                    lines.append(line[1:].strip())
        except OSError:
            return ""
        return "\n".join(lines).strip()


def list_templates() -> list[Template]:
    """The user's templates first (they are the ones they made), then the built-in ones, each by name."""
    found = []
    for folder, source in ((user_templates_dir(), "yours"), (BUILT_IN, "built-in")):
        if folder.is_dir():
            found += [Template(p.stem, p, source) for p in sorted(folder.glob("*.toml"))]  # type: ignore[arg-type]
    return found


def save_template(text: str, name: str) -> Path:
    """Writes a user template; refuses a name that is taken rather than overwrite someone's file."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        raise UserError(f"template name {name!r}: use letters, digits, '.', '_' and '-' (at most 100)")
    folder = user_templates_dir()
    path = folder / f"{name}.toml"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with path.open("x") as f:
            f.write(text)
    except FileExistsError:
        raise UserError(f"{path}: a template of that name exists; choose another name") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot write the template ({exc.strerror})") from None
    return path
