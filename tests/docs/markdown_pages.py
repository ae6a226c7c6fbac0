"""The Markdown pages as the docs test reads them: fenced blocks, the command lines in them,
commands named in the prose, links and repository paths.

Extraction only, plus the checks that need nothing but the files (links, paths); the checks
against the code are in ``doc_commands``. Every check returns a list of problems (empty when
the thing is fine), so a test can show them all at once.
"""
from __future__ import annotations

import re
import shlex
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SHELL_LANGS = {"bash", "sh", "shell", "console"}
WRAPPERS = {"nice": 1, "timeout": 1, "time": 0, "env": 0}  # program -> positional args it takes first
SEPARATORS = {"&&", "||", ";", "|", "&"}


def doc_pages(root: Path = ROOT) -> list[Path]:
    pages = [root / "README.md"] + sorted((root / "docs").glob("*.md"))
    return [p for p in pages if p.is_file()]


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # 1-based line of the first line inside the fence
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Command:
    where: str  # "page:line", for messages
    text: str
    argv: tuple[str, ...]


def fenced_blocks(markdown: str) -> Iterator[Block]:
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).lower(), i + 1
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            i += 1
        yield Block(lang, start + 1, tuple(lines[start:i]))
        i += 1


def prose(markdown: str) -> str:
    """The page without its fenced blocks (line count kept, so positions still match)."""
    lines = markdown.splitlines()
    for b in fenced_blocks(markdown):
        for k in range(b.line - 2, b.line - 1 + len(b.lines) + 1):
            if 0 <= k < len(lines):
                lines[k] = ""
    return "\n".join(lines)


def _segments(argv: list[str]) -> Iterator[list[str]]:
    cur: list[str] = []
    for tok in argv:
        if tok in SEPARATORS:
            if cur:
                yield cur
            cur = []
        elif tok.endswith(";") and len(tok) > 1:
            cur.append(tok[:-1])
            yield cur
            cur = []
        else:
            cur.append(tok)
    if cur:
        yield cur


def _unwrap(argv: list[str]) -> list[str]:
    """Drop leading VAR=value assignments and wrappers such as ``nice -n 10`` or ``timeout 60``."""
    while argv:
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
            argv = argv[1:]
        elif argv[0] in WRAPPERS:
            n = WRAPPERS[argv[0]]
            argv = argv[1:]
            while argv and argv[0].startswith("-"):
                argv = argv[2:] if argv[0] == "-n" else argv[1:]
            argv = argv[n:]
        else:
            break
    return argv


def commands_in_block(block: Block, page: str = "?") -> list[Command]:
    """Shell command lines of a block: continuation lines joined, comments dropped, split at && ; |."""
    out: list[Command] = []
    pending, first = "", 0
    for k, raw in enumerate(block.lines):
        line = raw.rstrip()
        if not pending:
            first = block.line + k
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text, pending = (pending + line).strip(), ""
        if not text or text.startswith("#"):
            continue
        try:
            argv = shlex.split(text, comments=True)
        except ValueError as exc:
            out.append(Command(f"{page}:{first}", text, ("<unparsable>", str(exc))))
            continue
        for seg in _segments(argv):
            seg = _unwrap(seg)
            if seg:
                out.append(Command(f"{page}:{first}", text, tuple(seg)))
    return out


def page_name(page: Path) -> str:
    """README.md, docs/kafka.md: how messages name a page."""
    return f"docs/{page.name}" if page.parent.name == "docs" else page.name


def page_commands(page: Path) -> list[Command]:
    text = page.read_text(encoding="utf-8")
    name = page_name(page)
    cmds: list[Command] = []
    for block in fenced_blocks(text):
        if block.lang in SHELL_LANGS:
            cmds += commands_in_block(block, name)
    return cmds


def inline_foundry_commands(page: Path) -> list[Command]:
    """``foundry ...`` in inline code of the prose: checked like the blocks' commands."""
    text = prose(page.read_text(encoding="utf-8"))
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        for m in re.finditer(r"`((?:\.venv/bin/)?foundry [^`]+)`", line):
            try:
                argv = shlex.split(m.group(1))
            except ValueError as exc:
                argv = ["<unparsable>", str(exc)]
            out.append(Command(f"{page_name(page)}:{n}", m.group(1), tuple(argv)))
    return out


def unlabelled_command_blocks(page: Path) -> list[str]:
    """Blocks that show commands without a shell language, so nothing would check them."""
    problems = []
    for b in fenced_blocks(page.read_text(encoding="utf-8")):
        if b.lang in SHELL_LANGS:
            continue
        for k, line in enumerate(b.lines):
            # a command line, not a line of output that starts with the same word
            if re.match(r"^\s*(\.venv/bin/)?(foundry|make|python\S*) [\w-]+(\s+[-\w./<]|\s*$)", line):
                problems.append(f"{page_name(page)}:{b.line + k}: a command in a ```{b.lang or ''} block; "
                                f"mark the block bash so it is checked: {line.strip()}")
                break
    return problems


def heading_slugs(markdown: str) -> set[str]:
    """GitHub's anchors for the page's headings (duplicates get -1, -2, ...)."""
    seen: Counter[str] = Counter()
    slugs = set()
    for line in prose(markdown).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).replace("`", "").strip().lower()).replace(" ", "-")
        slugs.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return slugs


def check_links(page: Path) -> list[str]:
    """Every relative link of the page points at an existing file (and, for a page, an existing heading)."""
    text = page.read_text(encoding="utf-8")
    body = prose(text)
    problems = []
    for n, line in enumerate(body.splitlines(), 1):
        for m in re.finditer(r"\[[^\]]*\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)", line):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                problems.append(f"{page_name(page)}:{n}: link to {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in heading_slugs(dest.read_text(encoding="utf-8")):
                problems.append(f"{page_name(page)}:{n}: link to {target}: no heading #{anchor} in {dest.name}")
    return problems


def check_repo_paths(page: Path, root: Path = ROOT) -> list[str]:
    """Repository paths named in inline code (`streams/stages/density.py`) exist."""
    tops = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    tops -= {"out", "var", "archive"}  # outputs the commands write, not part of the tree
    problems = []
    for n, line in enumerate(prose(page.read_text(encoding="utf-8")).splitlines(), 1):
        for m in re.finditer(r"`([\w.-]+(?:/[\w.-]+)+/?)`", line):
            path = m.group(1)
            if path.split("/", 1)[0] in tops and not (root / path).exists():
                problems.append(f"{page_name(page)}:{n}: `{path}` does not exist")
    return problems
