"""One home for each measured number: README.md and docs/*.md quote numbers, never type them in.

The rule, per *unit* of a page: a paragraph (text between blank lines) or a list item (a line
starting with ``*``, ``-``, ``+`` or ``1.``, with its continuation lines); a table is one unit.

* Fenced code blocks are left out (commands and their printed output), and so are inline code
  spans and link targets: configuration values and paths are written as code (`lr=3e-4`).
* A *measured-looking number* is a decimal with a fractional part (``0.783``, ``34.3``) or a
  number followed by a unit: ``x`` or ``%`` written against it (``1.22x``, ``30%``), or ``ms``,
  ``s`` (``s/step`` too), ``min``, ``h``, ``seconds``, ``minutes``, ``hours`` or a size (``MB``,
  ``MiB``, ``GB``, ``GiB``, ...) after an optional space (``85 s``, ``14 min``, ``50 MiB``).
  Versions (``2.13.0``, ``v1.1``) and exponents (``3.16e-3``) are not.
* A unit with such numbers must link (``[text](path)``) to an output file: under ``results/`` or
  ``benchmarks/results/``, ``data/prepare_report.json`` or ``REPORT.md``. Every such number must
  occur in the text of one of those linked files: as the same string, or as a file number that
  rounds to it at the number's shown precision (``2.0121`` shows as ``2.012``, ``2.01`` or
  ``2``); thousands separators do not count.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OUTPUTS = ("results/", "benchmarks/results/", "data/prepare_report.json", "REPORT.md")

FENCE = re.compile(r"^ *```.*?^ *```[^\n]*$", re.M | re.S)
CODE = re.compile(r"`[^`]+`")  # may wrap a line, as in Markdown
LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)\)")
ITEM = re.compile(r"^\s*(?:[*+-]|\d+\.)\s")
# A number not glued to a word, a dot or another digit (so no versions, no 3.16e-3), with the
# unit written after it, if any.
NUMBER = re.compile(
    r"(?<![\w.])(\d+(?:,\d{3})*(?:\.(\d+))?)(?!\.?\d|[eE][-+]?\d)"
    r"(?:(x|%)|\s?(ms|min|seconds|minutes|hours|s|h|[KMGT]i?B|kB)\b)?")
FILE_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def units(text: str) -> list[str]:
    """The page's paragraphs and list items, fenced code blocks left out."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", FENCE.sub("", text)):
        for i, line in enumerate(block.splitlines()):
            if i == 0 or ITEM.match(line):
                out.append(line)
            else:
                out[-1] += "\n" + line
    return [unit for unit in out if unit.strip()]


def measured(unit: str) -> list[tuple[str, int]]:
    """Each measured-looking number of a unit, with its count of decimal places."""
    prose = LINK.sub(lambda m: m.group(1), CODE.sub("", unit))
    return [(m.group(1).replace(",", ""), len(m.group(2) or ""))
            for m in NUMBER.finditer(prose)
            if m.group(2) or m.group(3) or m.group(4)]


def linked_outputs(unit: str, page: Path, root: Path) -> list[Path]:
    paths = []
    for _, target in LINK.findall(CODE.sub("", unit)):
        if "://" in target:
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if path.is_relative_to(root.resolve()):
            relative = path.relative_to(root.resolve()).as_posix()
            if relative.startswith(OUTPUTS):
                paths.append(path)
    return paths


def found(number: str, places: int, text: str) -> bool:
    """Whether a file's text shows the number, or a number that rounds to it."""
    text += "\n" + re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # 10,570 also as 10570
    if re.search(rf"(?<![\d.]){re.escape(number)}(?!\d)", text):
        return True
    return any(abs(float(value) - float(number)) <= 0.5 * 10 ** -places + 1e-12
               for value in FILE_NUMBER.findall(text))


def problems(page: Path, root: Path = ROOT) -> list[str]:
    """What breaks the rule on one page: one line per unquoted number."""
    out = []
    for unit in units(page.read_text()):
        numbers = measured(unit)
        if not numbers:
            continue
        sources = linked_outputs(unit, page, root)
        first = unit.strip().splitlines()[0][:70]
        if not sources:
            out.append(f"{page.name}: {[n for n, _ in numbers]} with no linked output: {first}")
            continue
        text = "\n".join(p.read_text(errors="replace") for p in sources if p.is_file())
        out += [f"{page.name}: {number} is in none of {[p.name for p in sources]}: {first}"
                for number, places in numbers if not found(number, places, text)]
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_measured_number_is_quoted_from_a_linked_output(page: Path) -> None:
    assert problems(page) == []


def test_the_checker_catches_a_planted_number(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "speed.csv").write_text("optimizer,ratio,seconds\nlamb,1.2437,85.4\n")
    page = tmp_path / "page.md"
    page.write_text(
        "Quoted: LAMB at 1.24x in 85 s ([speed](results/speed.csv)), rounded from the file.\n\n"
        "* Planted: 1.31x ([speed](results/speed.csv)).\n"
        "* Typed in with no output: about 30x slower.\n"
        "* Sizes and rates too: 47 MB, 2 GiB, 3 s/step.\n\n"
        "Not measured: `lr=0.5`, torch 2.13.0, SQuAD v1.1, 3.16e-3, 2 x 128.\n\n"
        "```\n$ python bench.py\n1.99x\n```\n")
    assert problems(page, tmp_path) == [
        "page.md: 1.31 is in none of ['speed.csv']: * Planted: 1.31x ([speed](results/speed.csv)).",
        "page.md: ['30'] with no linked output: * Typed in with no output: about 30x slower.",
        "page.md: ['47', '2', '3'] with no linked output: * Sizes and rates too: 47 MB, 2 GiB, "
        "3 s/step.",
    ]


def test_relative_links_resolve() -> None:
    """Every relative link of README.md and docs/ names a file or folder of the repository and,
    for a Markdown file, an existing heading. A benchmark result not committed yet may be linked
    where a script under benchmarks/ writes it."""
    scripts = " ".join(p.read_text() for p in (ROOT / "benchmarks").glob("*.*")
                       if p.suffix in {".py", ".sh"})
    broken = []
    for page in PAGES:
        for _, target in LINK.findall(CODE.sub("", FENCE.sub("", page.read_text()))):
            if "://" in target or target.startswith("mailto:"):
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            relative = path.relative_to(ROOT).as_posix()
            if not path.exists():
                if not (relative.startswith("benchmarks/results/") and relative in scripts):
                    broken.append(f"{page.name}: {target}")
            elif anchor and anchor not in anchors(path):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.*)$", FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in headings}
