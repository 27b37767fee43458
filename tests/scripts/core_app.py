"""Drives the app in an environment without torch (``tests/test_core_install.py``): the runs list shows the run
given on the command line, and the new-run form opens. Prints ``ok`` and the modules that were never imported."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from textual.widgets import DataTable

from clusterdeck.app.tui.app import make_app
from clusterdeck.app.tui.newrun import NewRunScreen


async def main(runs_root: Path, run_id: str) -> None:
    app = make_app(runs_root)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(DataTable)
        for _ in range(200):  # the table fills on the app's first poll: wait for it, not for a time
            if table.row_count:
                break
            await pilot.pause(0.05)
        assert run_id in [str(key.value) for key in table.rows], list(table.rows)
        await pilot.press("n")
        for _ in range(200):
            if isinstance(app.screen, NewRunScreen):
                break
            await pilot.pause(0.05)
        assert isinstance(app.screen, NewRunScreen), app.screen
    print("ok", *[m for m in ("torch", "torchvision", "webdataset") if m not in sys.modules])


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
