"""What a remote deck asks of the app from its worker threads: two-factor answers, and word of its connection."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from textual.widgets import Input, Label, Static
from textual.widgets._header import HeaderTitle

from clusterdeck.app.tui.app import make_app
from clusterdeck.app.tui.prompt import PromptScreen, tui_prompter
from clusterdeck.app.tui.runs import RunsScreen
from clusterdeck.jobs.errors import UserError
from tests.conftest import noted, until

PROMPTS = [("Code: ", False), ("Name: ", True)]


def ask_in_a_thread(prompter: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Calls ``prompter`` as a deck's connecting thread does; what it returned or raised lands in the dict."""
    got: dict[str, Any] = {}

    def ask() -> None:
        try:
            got["answers"] = prompter("Two-factor", "Enter the code", PROMPTS)
        except UserError as exc:
            got["error"] = exc

    thread = threading.Thread(target=ask, daemon=True)  # daemon: a failed test leaves no thread waiting
    thread.start()
    return thread, got


async def test_the_answers_typed_in_the_dialog_are_what_the_thread_gets(tmp_path: Path) -> None:
    app = make_app(tmp_path / "runs")
    shown = noted(app)
    async with app.run_test(size=(80, 24)) as pilot:
        thread, got = ask_in_a_thread(tui_prompter(app))
        await until(pilot, lambda: isinstance(app.screen, PromptScreen), timeout=10)
        screen = app.screen
        assert str(screen.query_one("#prompt-title", Label).content) == "Two-factor"
        assert str(screen.query_one("#prompt-instructions", Static).content) == "Enter the code"
        assert [str(label.content) for label in screen.query(".prompt-label").results(Label)] == ["Code:", "Name:"]
        code, name = screen.query_one("#prompt-0", Input), screen.query_one("#prompt-1", Input)
        assert code.password and not name.password  # echo False: hidden as it is typed
        assert code.has_focus
        await pilot.press(*"123456", "enter")  # enter on a prompt that is not the last: on to the next
        assert name.has_focus and thread.is_alive()
        await pilot.press(*"me", "enter")
        await until(pilot, lambda: not thread.is_alive(), timeout=10)
        assert got == {"answers": ["123456", "me"]}
        assert isinstance(app.screen, RunsScreen)
        assert not any("123456" in m for m in shown)  # never shown back


async def test_escape_cancels_the_prompt_and_the_thread_gets_a_user_error(tmp_path: Path) -> None:
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.deck.prompter is not None  # the app answers its deck's prompts
        thread, got = ask_in_a_thread(app.deck.prompter)
        await until(pilot, lambda: isinstance(app.screen, PromptScreen), timeout=10)
        await pilot.press(*"12", "escape")
        await until(pilot, lambda: not thread.is_alive(), timeout=10)
        assert list(got) == ["error"] and got["error"].problems == ["two-factor prompt cancelled"]
        assert isinstance(app.screen, RunsScreen)


async def test_quitting_with_the_prompt_open_lets_the_thread_go(tmp_path: Path) -> None:
    app = make_app(tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        thread, got = ask_in_a_thread(tui_prompter(app))
        await until(pilot, lambda: isinstance(app.screen, PromptScreen), timeout=10)
        app.exit()
    thread.join(timeout=10)  # it would wait for ever on a dialog that is gone, and hold the process open
    assert not thread.is_alive()
    assert list(got) == ["error"]


async def test_connection_events_from_another_thread_show_until_reconnected(tmp_path: Path) -> None:
    app = make_app(tmp_path / "runs")
    shown = noted(app)
    async with app.run_test(size=(160, 24)) as pilot:
        where = app.deck.where
        assert app.sub_title == where
        lost = "connection to x lost (EOF); reconnecting in 1 s"
        assert app.deck.events is not None
        told = threading.Thread(target=app.deck.events, args=(lost,))
        told.start()
        told.join()
        await until(pilot, lambda: app.sub_title != where, timeout=10)
        assert app.sub_title == f"{where} — {lost}"
        await until(pilot, lambda: lost in shown, timeout=10)
        title = app.screen.query_one(HeaderTitle)  # the runs screen's own sub-title hides the app's: shown anyway
        await until(pilot, lambda: lost in str(title.content), timeout=10)

        told = threading.Thread(target=app.deck.events, args=("reconnected to x",))
        told.start()
        told.join()
        await until(pilot, lambda: app.sub_title == where, timeout=10)
        await until(pilot, lambda: lost not in str(title.content), timeout=10)
        assert "runs" in str(title.content)  # the screen's own sub-title is back as it was
    assert app.deck.events is None and app.deck.prompter is None  # the deck outlives the app: nothing calls into it
