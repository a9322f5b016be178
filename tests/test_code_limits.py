"""Size and repetition limits of the C sources (STYLE.md: small files, short functions).

- every .c/.h under src/, cli/, include/ has at most MAX_FILE_LINES lines;
- every C function has at most MAX_FUNCTION_LINES lines, counted from the line of its
  opening brace to the line of its closing brace, both included. The codebase puts a
  function's opening brace alone at column 0 after its signature and its closing brace at
  column 0; a line that ends a signature with ``) {`` is recognised as well, so a function
  written that way is not silently left out;
- the ``duplicates`` tool (a development-machine tool, not part of the build) finds at most
  MAX_DUPLICATE_PAIRS pairs of repeated places in each folder. Where the tool is not
  installed that check is skipped with the reason; the size checks always run.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKED_DIRS = ("src", "cli", "include")
MAX_FILE_LINES = 800
MAX_FUNCTION_LINES = 120
MAX_DUPLICATE_PAIRS = {"src": 20, "cli": 4}

# A signature line that opens the body on the same line: starts at column 0 with a
# name or type, has a parameter list, ends with "{" and is no initializer or type body.
SAME_LINE_OPEN = re.compile(r"^[A-Za-z_][^=;]*\)\s*\{\s*$")
TYPE_BODY = re.compile(r"^(typedef\s+)?(struct|union|enum)\b")


def c_sources():
    files = []
    for d in CHECKED_DIRS:
        files += sorted((REPO_ROOT / d).rglob("*.c")) + sorted((REPO_ROOT / d).rglob("*.h"))
    return files


def function_spans(lines):
    """Yields (name, first_line, last_line), 1-based and inclusive, for each function
    body in `lines`: an opening brace at column 0 whose previous non-blank line ends a
    signature with ")", or a column-0 signature ending with ") {"; the body ends at the
    next line that starts with "}" at column 0."""
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        opens = False
        if line.startswith("{"):
            j = i - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            opens = j >= 0 and lines[j].rstrip().endswith(")")
            sig_end = j
        elif SAME_LINE_OPEN.match(line) and not TYPE_BODY.match(line):
            opens = True
            sig_end = i
        if not opens:
            i += 1
            continue
        # The function's name: the identifier before the first "(" of its signature,
        # looking back over the lines of a signature that spans several.
        k = sig_end
        while k > 0 and "(" not in lines[k] and lines[k - 1].strip():
            k -= 1
        m = re.search(r"([A-Za-z_]\w*)\s*\(", lines[k])
        name = m.group(1) if m else f"<line {i + 1}>"
        end = i + 1
        while end < n and not lines[end].startswith("}"):
            end += 1
        assert end < n, f"no closing brace at column 0 for {name} opened at line {i + 1}"
        yield name, i + 1, end + 1
        i = end + 1


def test_function_parser_finds_functions():
    # The parser must see this codebase's functions, else the length check below
    # passes vacuously.
    sample = [
        "static int f(int a,",
        "             int b)",
        "{",
        "    return a + b;",
        "}",
        "",
        "static const int t[] = {",
        "    1, 2,",
        "};",
        "int g(void) {",
        "    return 0;",
        "}",
    ]
    assert list(function_spans(sample)) == [("f", 3, 5), ("g", 10, 12)]
    total = sum(1 for p in c_sources() if p.suffix == ".c"
                for _ in function_spans(p.read_text(errors="replace").splitlines()))
    assert total > 300, f"only {total} functions found in the C sources: the parser is broken"


def test_files_at_most_800_lines():
    files = c_sources()
    assert files, "no C sources found"
    long = []
    for p in files:
        count = len(p.read_text(errors="replace").splitlines())
        if count > MAX_FILE_LINES:
            long.append(f"{p.relative_to(REPO_ROOT)}: {count} lines")
    assert not long, f"files over {MAX_FILE_LINES} lines:\n" + "\n".join(long)


def test_functions_at_most_120_lines():
    long = []
    for p in c_sources():
        lines = p.read_text(errors="replace").splitlines()
        for name, first, last in function_spans(lines):
            count = last - first + 1
            if count > MAX_FUNCTION_LINES:
                long.append(f"{p.relative_to(REPO_ROOT)}:{first}: {name}: {count} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


@pytest.mark.parametrize("folder", sorted(MAX_DUPLICATE_PAIRS))
def test_duplicate_pairs(folder):
    tool = shutil.which("duplicates")
    if tool is None:
        pytest.skip("the `duplicates` tool is not installed (it exists only on the development "
                    "machine); the repetition limit was not checked")
    proc = subprocess.run([tool, "--most", "200", "--seconds", "120", "--repo", folder],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    first = out.splitlines()[0] if out else ""
    assert "incomplete:" not in out, f"duplicates did not read the whole of {folder}:\n{out}"
    if first.startswith("no duplicates"):
        return
    m = re.match(r"(\d+) pairs? of places", first)
    assert m, f"unexpected first line from duplicates: {first!r}"
    pairs = int(m.group(1))
    limit = MAX_DUPLICATE_PAIRS[folder]
    assert pairs <= limit, f"{pairs} duplicate pairs in {folder}/ (at most {limit}):\n{out}"
