"""Questions: asked on a terminal (questionary, imported only when a question is asked),
or answered unattended.

Unattended (``--yes``, ``--answers``, or no terminal), a question with a safe default
takes it (and says so); a question without one fails at once with a
:class:`~mkdoctor.options.UsageError` naming the flag that answers it (exit status 2).
Without ``--yes`` and without a terminal, the command fails before any question
(see :func:`mkdoctor.wizard.main.main`).

Ctrl-C at a prompt raises KeyboardInterrupt (questionary's ``unsafe_ask``), which the
wizard turns into exit status 130: before step 10 wrote the files, "every file is as it
was"; after, that the written files stay (see :func:`mkdoctor.wizard.main.setup_one`).
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional, Sequence

from mkdoctor.options import UsageError


class Asker:
    def __init__(self, interactive: bool, out=None) -> None:
        self.interactive = interactive
        self.out = out or sys.stdout

    def _note(self, text: str) -> None:
        print(f"  {text}", file=self.out, flush=True)

    def _refuse(self, question: str, flag: str) -> None:
        raise UsageError(f"{question.rstrip('?:')}: no safe default when unattended; give {flag}")

    def select(self, question: str, choices: Sequence[tuple[Any, str]], default: Any,
               flag: str, safe: bool = True) -> Any:
        """One of ``choices`` (value, label). Unattended: ``default`` when ``safe``."""
        if not self.interactive:
            if not safe or default is None:
                self._refuse(question, flag)
            label = next((lbl for v, lbl in choices if v == default), str(default))
            self._note(f"{question} -> {label} (the recommended choice; {flag} sets it)")
            return default
        import questionary

        qchoices = [questionary.Choice(title=label, value=value) for value, label in choices]
        start = next((c for c in qchoices if c.value == default), None)
        return questionary.select(question, choices=qchoices, default=start).unsafe_ask()

    def confirm(self, question: str, default: bool, flag: str, safe: bool = True) -> bool:
        if not self.interactive:
            if not safe:
                self._refuse(question, flag)
            self._note(f"{question} -> {'yes' if default else 'no'} ({flag} sets it)")
            return default
        import questionary

        return bool(questionary.confirm(question, default=default).unsafe_ask())

    def text(self, question: str, default: Optional[str], flag: str,
             validate: Optional[Callable[[str], Optional[str]]] = None, safe: bool = True) -> str:
        """Free text; ``validate`` returns an error message or None."""
        if not self.interactive:
            if not safe or not default:
                self._refuse(question, flag)
            self._note(f"{question} -> {default} ({flag} sets it)")
            return default  # type: ignore[return-value]
        import questionary

        def check(value: str) -> Any:
            if validate is None:
                return True
            err = validate(value)
            return True if err is None else err

        return questionary.text(question, default=default or "", validate=check).unsafe_ask()
