"""The app owns navigation: screens post messages and ``app.tui.app`` alone knows every screen; one worker pattern.

Read from the source (function-local imports included), so a screen that starts importing another, a worker
started another way, or a deck told apart by its class fails here, not in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

TUI = REPO / "app" / "tui"
SCREENS = {f"clusterdeck.app.tui.{name}" for name in ("runs", "detail", "newrun", "compare", "cluster", "prompt")}


def modules() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text()) for path in sorted((REPO / "app").rglob("*.py"))}


def imported(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def test_only_the_app_imports_screens() -> None:
    screens = {path.relative_to(REPO).as_posix(): imported(tree) & SCREENS for path, tree in modules().items()}
    assert screens.pop("app/tui/app.py") == SCREENS
    assert {path: found for path, found in screens.items() if found} == {}


def test_every_worker_is_a_work_method_that_names_its_group_and_posts_what_it_found() -> None:
    workers = []
    for path, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr != "run_worker", f"{path}:{node.lineno}: run_worker, not @work"
                if node.func.attr == "call_from_thread":  # only the deck's prompter, on its connecting thread
                    assert path == TUI / "prompt.py", f"{path}:{node.lineno}: a worker posts messages instead"
            if isinstance(node, ast.FunctionDef):
                for decorator in node.decorator_list:
                    if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "work":
                        given = {k.arg: ast.literal_eval(k.value) for k in decorator.keywords}
                        assert {"thread", "name", "group", "exclusive"} <= given.keys(), (path, node.name)
                        assert given["exit_on_error"] is False, (path, node.name)
                        workers.append(node.name)
    assert len(workers) >= 10, workers


def test_the_app_asks_the_deck_rather_than_telling_decks_apart_by_class() -> None:
    for path, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
                kinds = ast.unparse(node.args[1])
                assert "Deck" not in kinds, f"{path}:{node.lineno}: isinstance(…, {kinds})"
