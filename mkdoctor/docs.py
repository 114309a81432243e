"""The checks' documentation pages (``docs/checks/MKnnn.md``), for ``mkdoctor explain``.

The pages are shipped inside the package (``mkdoctor.docpages``, mapped to ``docs/checks``
in pyproject.toml), so ``explain`` works from an installed wheel as from a checkout.
"""

from __future__ import annotations

from pathlib import Path


def doc_page(check_id: str) -> str:
    name = f"{check_id}.md"
    try:
        from importlib.resources import files

        return (files("mkdoctor.docpages") / name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        pass
    local = Path(__file__).resolve().parent.parent / "docs" / "checks" / name
    if local.is_file():
        return local.read_text(encoding="utf-8")
    from mkdoctor.registry import get

    check = get(check_id)
    return f"# {check.id} {check.name}\n\n{check.title}\n\n(No documentation page is installed.)\n"
