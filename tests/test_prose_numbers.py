"""Markdown never carries a number a run measured.

What a run shows is printed by a code cell from the values it computed; numbers from committed runs are loaded in
code from that run's files. Only the paper's numbers and the protocol's constants (docs/facts.md, outside its
measured sections "Noise between runs" and "Speed anchors") may be typed in a chapter's or a solution's markdown.
LaTeX (``$...$``) and inline code (identifiers such as ``noisy-0.3``) are not prose and are skipped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The project's check: a decimal (12.5) or a number with thousands separators (12,815), not inside a word,
# a version, a section sign or a parenthesised reference.
NUMBER = re.compile(r"(?<![\w.§(])([-−+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|[-−+]?\d+\.\d+)")
NOT_PROSE = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$|`[^`\n]*`", re.S)
MEASURED_SECTIONS = ("## Noise between runs", "## Speed anchors")


def _bare(number: str) -> str:
    return number.lstrip("+-−")


def paper_numbers(facts: Path = ROOT / "docs" / "facts.md") -> set[str]:
    """The numbers docs/facts.md states as the paper's or the protocol's (its measured sections left out)."""
    kept = []
    for section in re.split(r"(?m)^(?=## )", facts.read_text(encoding="utf-8")):
        if not section.startswith(MEASURED_SECTIONS):
            kept.append(section)
    return {_bare(m) for m in NUMBER.findall("".join(kept))}


def measured_numbers_in_prose(notebook: Path, allowed: set[str]) -> list[str]:
    """``"<file> cell <i>: <number> in '...'"`` for each number in a markdown cell that the paper does not give."""
    found = []
    for i, cell in enumerate(json.loads(notebook.read_text(encoding="utf-8"))["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        prose = NOT_PROSE.sub(" ", "".join(cell["source"]))
        for m in NUMBER.finditer(prose):
            if _bare(m.group(1)) not in allowed:
                context = " ".join(prose[max(0, m.start() - 40): m.end() + 20].split())
                found.append(f"{notebook.relative_to(notebook.parents[1])} cell {i}: {m.group(1)} in '{context}'")
    return found


def _notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))


def test_no_chapter_or_solution_types_a_measured_number_in_its_markdown():
    allowed = paper_numbers()
    found = [line for nb in _notebooks() for line in measured_numbers_in_prose(nb, allowed)]
    assert not found, ("markdown quotes numbers a run measured; print them from a code cell instead:\n"
                       + "\n".join(found))


def test_the_papers_numbers_are_allowed_and_the_measured_noise_is_not():
    allowed = paper_numbers()
    assert {"61.90", "21.66", "20.90", "2,375", "0.1"} <= allowed
    assert "48.12" not in allowed and "1.54" not in allowed


def test_a_measured_number_planted_in_a_chapter_copy_fails_the_check(tmp_path):
    source = ROOT / "notebooks" / "03_encoders.ipynb"
    nb = json.loads(source.read_text(encoding="utf-8"))
    md = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
    planted = tmp_path / "notebooks" / source.name
    planted.parent.mkdir()
    planted.write_text(json.dumps(nb), encoding="utf-8")
    clean = measured_numbers_in_prose(planted, paper_numbers())
    md["source"] = ["".join(md["source"]) + "\n\nIn our run TextSCD reached SeK 47.26, ahead of the paper's 21.66.\n"]
    planted.write_text(json.dumps(nb), encoding="utf-8")
    found = measured_numbers_in_prose(planted, paper_numbers())
    new = sorted(set(found) - set(clean))
    assert len(new) == 1 and "47.26" in new[0], new
    md["source"] = ["In code: `noisy-0.3`; in LaTeX: $x = 0.25 y$, both not prose.\n"]
    planted.write_text(json.dumps(nb), encoding="utf-8")
    assert measured_numbers_in_prose(planted, paper_numbers()) == clean
