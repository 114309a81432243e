"""The verification notebook (mkdoctor.wizard.verify_nb): valid Wolfram Language, for any
profile, hostile values included.

Mathematica cannot be installed here, so the syntax is checked by an independent parser,
Mathics3's (``mathics.core.parser``, a test dependency): the notebook expression, and the
code of every Input cell (the front end parses that string when the cell is evaluated).
A small tokenizer check (brackets, strings, comments) runs as well and is tested to fail
on broken text. What the cells do in a real front end is not tested here (no Mathematica).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mkdoctor.profile import Profile
from mkdoctor.wizard.verify_nb import verification_notebook
from mkdoctor.wizard.wl import parse_wl_string

_DEFS = None


def _parser():
    global _DEFS
    from mathics.core.definitions import Definitions
    from mathics.core.parser import MathicsMultiLineFeeder, parse

    if _DEFS is None:
        _DEFS = Definitions(add_builtin=False)
    return _DEFS, parse, MathicsMultiLineFeeder


def mathics_parse(code: str) -> list:
    """Every top-level expression of ``code``; raises on a syntax error."""
    defs, parse, feeder_cls = _parser()
    feeder = feeder_cls(code.splitlines(True), "<test>")
    out = []
    while not feeder.empty():
        expr = parse(defs, feeder)
        if expr is not None:
            out.append(expr)
    return out


def balanced(code: str) -> bool:
    """Brackets balanced and in order, outside strings and (nested) comments; strings closed."""
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    i, n, depth = 0, len(code), 0
    while i < n:
        c = code[i]
        if depth:
            if code.startswith("(*", i):
                depth, i = depth + 1, i + 2
            elif code.startswith("*)", i):
                depth, i = depth - 1, i + 2
            else:
                i += 1
            continue
        if code.startswith("(*", i):
            depth, i = 1, i + 2
        elif c == '"':
            i += 1
            while i < n and code[i] != '"':
                i += 2 if code[i] == "\\" else 1
            if i >= n:
                return False
            i += 1
        elif c in "([{":
            stack.append(c)
            i += 1
        elif c in ")]}":
            if not stack or stack.pop() != pairs[c]:
                return False
            i += 1
        else:
            i += 1
    return not stack and depth == 0


def profile(**kw) -> Profile:
    base = dict(name="lab", host="mk-lab", hostname="workstation.example.org", user="alice",
                mode="tunnel", link_ports=[31415, 31416])
    base.update(kw)
    return Profile(**base)


def input_cells(nb: str) -> list[str]:
    return [parse_wl_string(m.group(1))
            for m in re.finditer(r'Cell\(("(?:[^"\\]|\\.)*")\s*, "Input"\)'.replace(r"\(", r"\[")
                                 .replace(r"\)", r"\]"), nb)]


def test_notebook_parses_with_mathics_and_names_the_profile() -> None:
    nb = verification_notebook(profile())
    exprs = mathics_parse(nb)
    assert len(exprs) == 1 and str(exprs[0]).startswith("Global`Notebook[{")
    assert 'Evaluator -> "lab"' in nb
    cells = input_cells(nb)
    assert len(cells) == 4
    for code in cells:
        assert mathics_parse(code), code
        assert balanced(code)
    who, dyn, pre, verdict = cells
    assert '"workstation.example.org"' in who and "$MachineName" in who
    assert 'SystemInformation["FrontEnd", "MachineID"]' in who
    assert "Dynamic[Refresh[" in dyn and "UpdateInterval" in dyn
    assert "Pause[4]" in pre
    assert "Notebook's Kernel" in verdict and "preemptive link" in verdict


def test_the_checks_reject_broken_text() -> None:
    """The two checks can fail: each is shown broken code."""
    for bad in ('f[x', 'Column[{1, 2]', '"open string', 'g[(* unclosed comment ]'):
        assert not balanced(bad), bad
    for bad in ('f[x', 'Column[{1, 2]', 'a := := b'):
        with pytest.raises(Exception):
            mathics_parse(bad)


@settings(max_examples=40, deadline=None)
@given(st.text(min_size=1, max_size=40), st.text(max_size=40))
def test_hostile_profile_values_stay_inside_their_strings(name: str, host: str) -> None:
    nb = verification_notebook(profile(name=name, hostname=host, host=host or "mk-x"))
    assert balanced(nb)
    for code in input_cells(nb):
        assert balanced(code), code
    exprs = mathics_parse(nb)
    assert len(exprs) == 1  # nothing escaped into a second expression


def test_injection_attempt_is_a_string() -> None:
    evil = 'x"]; DeleteFile["~/.bashrc"]; ("'
    nb = verification_notebook(profile(hostname=evil, name=evil))
    assert len(mathics_parse(nb)) == 1
    who = input_cells(nb)[0]
    first = mathics_parse(who)[0]
    # mkExpected = <one string>: the hostile text is the string's content, not code
    assigned = first.elements[0]
    assert str(assigned.get_head()) == "System`Set"
    assert str(assigned.elements[0]) == "Global`mkExpected"
    assert assigned.elements[1].value == evil
