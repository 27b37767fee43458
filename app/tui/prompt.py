"""Two-factor (keyboard-interactive) prompts in the app: a dialog a remote deck's connecting thread waits on.

A remote deck may have to log in again while a worker calls it (the connection dropped), and the
login node may then ask for a one-time code. ``tui_prompter`` is the deck's ``prompter``: called
on that worker's thread, it shows a ``PromptScreen`` on the UI thread and blocks until the user
answers or cancels. Answers go back to the caller only; nothing here logs or keeps them.
"""

from __future__ import annotations

import threading
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from clusterdeck.jobs.deck.base import Prompter
from clusterdeck.jobs.errors import UserError

GONE_GRACE_S = 1.0
"""How long a prompt waits for the answer after the app stopped: a dismissal's callback may come just after."""


class PromptScreen(ModalScreen[list[str] | None]):
    """One input per prompt (hidden where the server asks for no echo); enter on the last one answers."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, heading: str, instructions: str, prompts: list[tuple[str, bool]]) -> None:
        super().__init__()
        self.heading = heading
        self.instructions = instructions
        self.prompts = prompts

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt"):
            # the server's words are shown as they are, never read as markup
            yield Label(self.heading or "Login", id="prompt-title", markup=False)
            if self.instructions:
                yield Static(self.instructions, id="prompt-instructions", markup=False)
            for i, (prompt, echo) in enumerate(self.prompts):
                yield Label(prompt.strip(), classes="prompt-label", markup=False)
                yield Input(password=not echo, id=f"prompt-{i}")
            yield Button("OK", variant="primary", id="prompt-ok")

    def on_mount(self) -> None:
        inputs = list(self.query(Input).results(Input))
        (inputs[0] if inputs else self.query_one("#prompt-ok", Button)).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        inputs = list(self.query(Input).results(Input))
        at = inputs.index(event.input)
        if at + 1 < len(inputs):
            inputs[at + 1].focus()
        else:
            self.answer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.answer()

    def answer(self) -> None:
        self.dismiss([i.value for i in self.query(Input).results(Input)])

    def action_cancel(self) -> None:
        self.dismiss(None)


def tui_prompter(app: App[Any]) -> Prompter:
    """A ``Prompter`` that asks in ``app``; call it from a thread other than the app's (a worker)."""

    def prompter(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        done = threading.Event()
        answers: list[list[str] | None] = [None]

        def dismissed(result: list[str] | None) -> None:
            answers[0] = result
            done.set()

        app.call_from_thread(app.push_screen, PromptScreen(title, instructions, prompts), dismissed)
        while not done.wait(0.25):
            # the app quit with the dialog open: its callback never comes; never hold the thread for ever
            if not app.is_running and not done.wait(GONE_GRACE_S):
                break
        if answers[0] is None:
            raise UserError("two-factor prompt cancelled")
        return answers[0]

    return prompter
