"""The new-run screen: a template or a cloned run in a form drawn from the spec's schema; submit.

Every edit rebuilds the spec's table from the form and checks it off the UI thread with
``jobs.spec_form.check_table`` (the validation ``clusterdeck submit`` runs), then shows each
problem under the field it names, the resolved spec, and the scripts the scheduler will get.
Submitting hands the table to the app's deck (``Deck.submit``), which validates and submits it
as ``clusterdeck submit`` does, on this machine or on the login node; what it warns of (``SchedulerWarning``)
is told in notifications (``app.tui.warned``). For a remote deck the
spec's paths are on the login node: the form checks no path here and leaves that to the
submission, whose problems come back as the deck's ``UserError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.syntax import Syntax
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import (
    Checkbox,
    Collapsible,
    Footer,
    Header,
    Input,
    Label,
    OptionList,
    Select,
    Static,
    TabbedContent,
    TabPane,
)
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState, get_current_worker

from clusterdeck.app.tui.messages import FormChecked, OpenRun, SubmitFailed, Submitted, TemplateRead, TemplatesListed
from clusterdeck.app.tui.screen import DeckScreen
from clusterdeck.app.tui.warned import scheduler_warnings
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.spec_form import (
    Checked,
    FormField,
    FormSection,
    check_table,
    form_sections,
    get_key,
    leaf_keys,
    parse_value,
    set_key,
    show_value,
    spec_toml,
    split_problem,
    table_toml,
    without_nones,
)
from clusterdeck.jobs.templates import Template, list_templates

CHECK_DELAY_S = 0.2
"""Typing settles this long before the form is checked again."""


def widget_id(key: str) -> str:
    return "f-" + key.replace(".", "--")


def section_id(key: str) -> str:
    return "s-" + (key.replace(".", "--") or "run")


class TemplateName(ModalScreen[str | None]):
    """Asks for the name to save the form under as one of the user's templates."""

    BINDINGS = [Binding("escape", "dismiss", "Cancel")]

    def __init__(self, suggested: str) -> None:
        super().__init__()
        self.suggested = suggested

    def compose(self) -> ComposeResult:
        with Vertical(id="template-name"):
            yield Label("Save as template (enter to save, escape to cancel):")
            yield Input(value=self.suggested, id="template-name-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)


class NewRunScreen(DeckScreen):
    BINDINGS = [
        Binding("ctrl+s", "submit", "Submit"),
        Binding("ctrl+t", "save_template", "Save template"),
        Binding("ctrl+o", "preview", "Spec/sbatch"),
        Binding("escape", "back", "Runs"),
    ]

    def __init__(self, table: dict[str, Any] | None = None, origin: str = "", template: Template | None = None) -> None:
        """Empty, or filled with a spec's ``table`` (a clone), or with ``template`` once it is read."""
        super().__init__()
        self.template = template
        self.sections = form_sections()
        self.fields = {f.key: f for s in self.sections for f in s.fields}
        self.start = without_nones(table) if table is not None else None
        self.origin = origin
        self.templates: list[Template] = []
        self.version = 0
        self.checked: FormChecked | None = None
        self.pending: Any = None
        self.submitting = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield OptionList(id="templates", markup=False)
            with TabbedContent(initial="form-tab", id="newrun-tabs"):
                with TabPane("Form", id="form-tab"), VerticalScroll(id="form"):
                    for section in self.sections:
                        yield self.section(section)
                with TabPane("Spec", id="spec-tab"), VerticalScroll():
                    yield Static("", id="resolved")
                with TabPane("sbatch", id="sbatch-tab"), VerticalScroll():
                    yield Static("", id="scripts")
        yield Static("", id="help")
        yield Static("", id="problems")
        yield Footer()

    def section(self, section: FormSection) -> Collapsible:
        title = f"{section.key or 'run'} · {section.doc.splitlines()[0] if section.doc else ''}"
        children: list[Widget] = []
        if section.optional:
            children.append(Checkbox(f"include {section.key}", id=section_id(section.key) + "-on", compact=True))
        children.append(Static("", classes="section-error", id=section_id(section.key) + "-error"))
        for field in section.fields:
            children += [Horizontal(Label(field.name, classes="field-name"), self.editor(field), classes="field")]
            children.append(Static("", classes="field-error", id=widget_id(field.key) + "-error"))
        return Collapsible(
            *children, title=title, collapsed=not section.starts_open, id=section_id(section.key), classes="section"
        )

    def editor(self, field: FormField) -> Widget:
        default = "required" if field.required else f"default: {show_value(field.default) or '(empty)'}"
        if field.kind == "choice":
            options = [(c or "(none)", c) for c in field.choices]
            return Select(options, prompt=default, id=widget_id(field.key), compact=True)
        if field.kind == "bool":
            return Select([("true", "true"), ("false", "false")], prompt=default, id=widget_id(field.key), compact=True)
        return Input(placeholder=default, id=widget_id(field.key), compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"new run · {self.origin}" if self.origin else "new run"
        self.load_templates()
        self.fill(self.start or {"name": "", "cluster": {"executor": "local"}})
        if self.template is not None:
            self.read_template(self.template)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:  # a UserError names its file (bad TOML in a user's template)
            error = event.worker.error
            text = str(error) if isinstance(error, UserError) else f"{event.worker.name}: {error}"
            self.notify(text, severity="error", markup=False, timeout=10)

    # -- templates and filling -------------------------------------------------------------------

    @work(thread=True, name="list templates", group="templates", exclusive=True, exit_on_error=False)
    def load_templates(self) -> None:
        self.post_message(TemplatesListed(list_templates()))

    def on_templates_listed(self, message: TemplatesListed) -> None:
        found = self.templates = message.templates
        options = self.query_one("#templates", OptionList)
        options.clear_options()
        options.add_options(
            [Option(("★ " if t.source == "yours" else "") + t.name, id=str(i)) for i, t in enumerate(found)]
        )
        chosen = self.template.path if self.template is not None else None  # the palette's, else the first
        options.highlighted = next((i for i, t in enumerate(found) if t.path == chosen), 0) if found else None

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.read_template(self.templates[int(event.option.id or 0)])

    @work(thread=True, name="read template", group="template", exclusive=True, exit_on_error=False)
    def read_template(self, template: Template) -> None:
        """The user's templates may sit on a network home: off the UI thread. Bad TOML keeps the form."""
        self.post_message(TemplateRead(template, template.table(), template.comment()))

    def on_template_read(self, message: TemplateRead) -> None:
        template, table, note = message.template, message.table, message.note
        self.origin = f"template {template.name}"
        self.sub_title = f"new run · {self.origin}"
        self.fill(table, source=str(template.path))
        self.query_one("#help", Static).update(Text(note.splitlines()[0] if note else template.name, "italic"))

    def fill(self, table: dict[str, Any], source: str = "") -> None:
        """Shows ``table`` in the form: keys it does not set are left empty (their defaults apply). What
        the form cannot hold (a key the spec does not have, a value that is not a choice) is named in a
        warning and left out; the file it came from is not touched."""
        dropped = [f"{key} (not a key of a spec)" for key in sorted(leaf_keys(table) - set(self.fields))]
        for section in self.sections:
            if section.optional:
                on = isinstance(get_key(table, section.key), dict)
                self.query_one(f"#{section_id(section.key)}-on", Checkbox).value = on
        for key, field in self.fields.items():
            value = get_key(table, key)
            editor = self.query_one(f"#{widget_id(key)}")
            if isinstance(editor, Select):
                shown = show_value(value)
                if value is not None and shown not in (field.choices or ("true", "false")):
                    dropped.append(f"{key} = {shown!r} (not one of {', '.join(field.choices or ('true', 'false'))})")
                    value = None
                editor.value = shown if value is not None else Select.NULL
            elif isinstance(editor, Input):
                editor.value = show_value(value)
        if dropped:
            self.notify(
                f"{source or 'the spec'}: left out {'; '.join(dropped)}",
                severity="warning",
                markup=False,
                timeout=15,
            )
        self.changed()

    # -- the form as a table, checked off the UI thread --------------------------------------------

    def included(self, key: str) -> bool:
        """A section counts unless it, or a section it sits in, is optional and not included."""
        for section in self.sections:
            inside = key == section.key or key.startswith(section.key + ".")
            on = f"#{section_id(section.key)}-on"
            if section.optional and section.key and inside and not self.query_one(on, Checkbox).value:
                return False
        return True

    def table(self) -> dict[str, Any]:
        table: dict[str, Any] = {}
        for section in self.sections:
            if not self.included(section.key):
                continue
            if section.optional:
                set_key(table, section.key, get_key(table, section.key) or {})
            for field in section.fields:
                set_key(table, field.key, parse_value(field, self.text_of(field)))
        return table

    def text_of(self, field: FormField) -> str:
        editor = self.query_one(f"#{widget_id(field.key)}")
        if isinstance(editor, Select):
            return "" if editor.value is Select.NULL else str(editor.value)
        return str(editor.value) if isinstance(editor, Input) else ""

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def changed(self) -> None:
        for section in self.sections:  # a section left out, or inside one left out, cannot be edited
            fields = self.query_one(f"#{section_id(section.key)}", Collapsible).query(".field")
            fields.set(disabled=not self.included(section.key))
        if self.pending is not None:
            self.pending.stop()
        self.pending = self.set_timer(CHECK_DELAY_S, self.check)

    def check(self) -> None:
        self.pending = None
        self.version += 1
        deck = self.cd.deck
        self.check_form(self.version, self.table(), deck.submit_root, deck.local)

    @work(thread=True, name="check the form", group="check", exclusive=True, exit_on_error=False)
    def check_form(self, version: int, table: dict[str, Any], root: Path | None, local: bool) -> None:
        from clusterdeck.jobs.submit import preflight, preview_run

        resolved, scripts = "", {}
        try:
            # local: stats the paths it names (never on the UI thread); remote: they are the login node's
            shown = table
            if local:  # checked and previewed with the user's [defaults] under the form's values, as submit
                from clusterdeck.jobs.deck.local import with_user_defaults  # applies them (to the form's table)

                shown = with_user_defaults(table)[0]
            checked = check_table(shown, check_paths=local)
            if checked.spec is not None:
                resolved = spec_toml(checked.spec)
                if local:
                    preflight(checked.spec)  # submit's own checks of inputs and outputs (shard sets, free names)
                scripts = preview_run(checked.spec, root)
        except UserError as exc:
            checked = Checked(None, [split_problem(p) for p in exc.problems])
        except Exception as exc:  # never leave the form unchecked and silent
            checked = Checked(None, [("", f"cannot check the form: {type(exc).__name__}: {exc}")])
        if not get_current_worker().is_cancelled:
            self.post_message(FormChecked(version, table, checked, resolved, scripts))

    def on_form_checked(self, message: FormChecked) -> None:
        if message.version != self.version:
            return  # the form changed since: a newer check is on its way
        self.checked = message
        self.show_problems(message.checked.problems)
        self.query_one("#resolved", Static).update(
            Syntax(message.resolved, "toml", theme="ansi_dark") if message.resolved else "(fix the problems first)"
        )
        scripts = "\n".join(f"# ---- {name} ----\n{text}" for name, text in message.scripts.items())
        self.query_one("#scripts", Static).update(
            Syntax(scripts, "bash", theme="ansi_dark") if scripts else "(fix the problems first)"
        )

    def show_problems(self, problems: list[tuple[str, str]]) -> None:
        by_key: dict[str, list[str]] = {}  # a problem no field or section owns shows in the status line only
        for key, text in problems:
            owner = self.owner_of(key)
            if owner is not None:
                by_key.setdefault(owner, []).append(text if owner == key else f"{key}: {text}")
        for key in self.fields:
            self.show_error(f"#{widget_id(key)}-error", by_key.get(key))
        for section in self.sections:
            self.show_error(f"#{section_id(section.key)}-error", by_key.get("[" + section.key + "]"))
        status = self.query_one("#problems", Static)
        if problems:
            listed = "; ".join(f"{k}: {t}" if k else t for k, t in problems[:3])
            more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
            status.update(Text(f"{len(problems)} problem(s): {listed}{more}", "bold red"))
            status.add_class("bad")
        else:
            spec = self.checked.checked.spec if self.checked else None
            steps = " → ".join(spec.steps) if spec else ""
            status.update(Text(f"ready: {steps} on {spec.cluster.executor if spec else ''} · ctrl+s submits", "green"))
            status.remove_class("bad")

    def owner_of(self, key: str) -> str | None:
        """The field a problem belongs to, else its section (as ``[key]``), else None."""
        if key in self.fields:
            return key
        sections = [s.key for s in self.sections if s.key and (key == s.key or key.startswith(s.key + "."))]
        return f"[{max(sections, key=len)}]" if sections else None

    def show_error(self, selector: str, texts: list[str] | None) -> None:
        label = self.query_one(selector, Static)
        label.update(Text("↳ " + "; ".join(texts), "red") if texts else "")
        label.display = bool(texts)

    def on_descendant_focus(self, event: Any) -> None:
        widget_id_ = getattr(event.widget, "id", "") or ""
        if widget_id_.startswith("f-"):
            key = widget_id_[2:].replace("--", ".")
            field = self.fields.get(key)
            if field is not None:
                self.query_one("#help", Static).update(Text.assemble((f"{key}: ", "bold"), field.doc))

    # -- actions ----------------------------------------------------------------------------------

    def action_back(self) -> None:
        if self.submitting:
            self.notify("submitting; the run opens when the scheduler answers", severity="warning")
            return
        self.app.pop_screen()

    def action_preview(self) -> None:
        tabs = self.query_one("#newrun-tabs", TabbedContent)
        order = ["form-tab", "spec-tab", "sbatch-tab"]
        tabs.active = order[(order.index(tabs.active) + 1) % len(order)] if tabs.active in order else "form-tab"

    def ready(self) -> Checked | None:
        if self.pending is not None or self.checked is None or self.checked.version != self.version:
            self.notify("checking the form; try again in a moment", severity="warning")
            return None
        checked = self.checked.checked
        if checked.problems or checked.spec is None:
            self.notify(f"{len(checked.problems)} problem(s) to fix first", severity="error")
            first = next((self.owner_of(k) for k, _ in checked.problems if self.owner_of(k) in self.fields), None)
            if first is not None:
                self.reveal(first)
            return None
        return checked

    def reveal(self, key: str) -> None:
        self.query_one("#newrun-tabs", TabbedContent).active = "form-tab"
        for section in self.sections:
            if section.key and key.startswith(section.key + "."):
                self.query_one(f"#{section_id(section.key)}", Collapsible).collapsed = False
        self.query_one(f"#{widget_id(key)}").focus()

    def action_submit(self) -> None:
        checked = self.ready()
        if checked is None or checked.spec is None or self.submitting:
            return
        assert self.checked is not None  # ready() saw it
        self.submitting = True
        self.submit(self.checked.table, self.origin or "new run form")

    @work(thread=True, name="submit", group="submit", exclusive=False, exit_on_error=False)
    def submit(self, table: dict[str, Any], source: str) -> None:
        deck = self.cd.deck
        try:
            with scheduler_warnings(self.post_message):
                paths = deck.submit(table, source)  # the CLI's call: the run is the same as `clusterdeck submit`
        except Exception as exc:
            self.post_message(SubmitFailed(getattr(exc, "problems", [str(exc)]), source))
            return
        elsewhere = deck.unlisted_root(paths)  # resolves paths: off the UI thread too
        self.post_message(Submitted(str(paths.root), paths.run_id, elsewhere))

    def on_submit_failed(self, message: SubmitFailed) -> None:
        problems, source = message.problems, message.source
        self.submitting = False
        self.app.notify("submit failed: " + "; ".join(problems), severity="error", markup=False, timeout=15)
        if self.app.screen is self:  # under its field: a problem of the spec without the source it names
            # (and without the login node's name before it: "login1: new run form: train.lr: …")
            self.show_problems([split_problem(p.partition(f"{source}: ")[2] or p) for p in problems])

    def on_submitted(self, message: Submitted) -> None:
        self.submitting = False
        elsewhere = message.elsewhere
        where = f" under {elsewhere} (its cluster.runs_root), not listed here" if elsewhere else ""
        self.app.notify(f"submitted run {message.run_id}{where}", markup=False, timeout=10 if elsewhere else 5)
        self.post_message(OpenRun(message.path, instead_of=self))

    def action_save_template(self) -> None:
        checked = self.ready()
        if checked is None or self.checked is None:
            return
        text = f"# {self.origin or 'made in the app'}\n" + table_toml(self.checked.table)

        def save(name: str | None) -> None:
            from clusterdeck.jobs.templates import save_template

            if not name:
                return
            try:
                path = save_template(text, name)
            except UserError as exc:
                self.notify(str(exc), severity="error", markup=False, timeout=10)
                return
            self.notify(f"saved {path}", markup=False)
            self.load_templates()

        name = checked.spec.name if checked.spec else "template"
        suggested = "".join(c if c.isalnum() or c in "._-" else "-" for c in name)
        self.app.push_screen(TemplateName(suggested), save)
