"""What a container of compose/Dockerfile holds, read from the Dockerfile itself.

The model is small on purpose: the instructions the project's Dockerfile uses (WORKDIR, COPY,
RUN with mkdir / chown / pip install / rm -rf, USER, VOLUME). The installed files come from a
real wheel built from exactly what the COPY lines bring in, so package data the Dockerfile
leaves out is missing here too.
"""
from __future__ import annotations

import fnmatch
import json
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SITE = "/usr/local/lib/python3.11/site-packages"  # python:3.11-slim's purelib


@dataclass
class Image:
    user: str = "root"
    workdir: str = "/"
    files: set[str] = field(default_factory=set)  # absolute paths of regular files
    dirs: set[str] = field(default_factory=lambda: {"/"})
    owned: set[str] = field(default_factory=set)  # folders chowned to a non-root user
    owner: dict[str, str] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # file -> the repository file it is a copy of
    volumes: list[str] = field(default_factory=list)
    package_root: str = SITE  # where `import schemas` resolves
    problems: list[str] = field(default_factory=list)

    def add_file(self, path: str) -> None:
        self.files.add(path)
        d = posixpath.dirname(path)
        while d not in self.dirs:
            self.dirs.add(d)
            d = posixpath.dirname(d)

    def add_dir(self, path: str) -> None:
        self.add_file(posixpath.join(path, ".keep"))
        self.files.discard(posixpath.join(path, ".keep"))

    def remove(self, path: str) -> None:
        self.files = {f for f in self.files if not _under(f, path)}
        self.origin = {f: o for f, o in self.origin.items() if f in self.files}
        self.dirs = {d for d in self.dirs if not _under(d, path) or d == "/"}

    def writable_dir(self, path: str) -> bool:
        """Owned by the runtime user: the folder or the nearest existing folder above it."""
        d = path
        while d not in self.dirs:
            d = posixpath.dirname(d)
        return self.user == "root" or self.owner.get(d) == self.user


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _listed_files(rel: str) -> list[str]:
    """Files of the build context under ``rel`` (what git would ship: no caches, no build output)."""
    res = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", rel],
                         cwd=REPO, capture_output=True, check=True)
    return [p for p in res.stdout.decode().split("\0") if p and (REPO / p).is_file()]


def _wheel_files(src: Path, tmp: Path) -> list[str]:
    dist = tmp / "dist"
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "--no-cache-dir", "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise AssertionError(f"the image's pip install would fail:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return [n for n in zf.namelist() if not n.endswith("/") and ".dist-info/" not in n]


def ignored(patterns: list[str], rel: str) -> bool:
    """Whether a .dockerignore leaves ``rel`` out of the build context: the last pattern that
    matches it or a folder above it decides (``!`` puts it back)."""
    parts = rel.split("/")
    out = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatch(prefix, pat) or (pat.startswith("**/") and fnmatch.fnmatch(parts[i - 1], pat[3:])):
                out = not neg
                break
    return out


def build_image(dockerfile: Path, context: Path, tmp: Path) -> Image:
    img = Image()
    # BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile before the context's own
    ignore_file = dockerfile.with_name(dockerfile.name + ".dockerignore")
    if not ignore_file.exists():
        ignore_file = context / ".dockerignore"
    patterns = [ln.strip() for ln in ignore_file.read_text().splitlines()
                if ln.strip() and not ln.startswith("#")] if ignore_file.exists() else []
    staged: dict[str, str] = {}  # container path -> repo path, for the files COPY brought in
    for word, rest in instructions(dockerfile.read_text()):
        if word == "WORKDIR":
            img.workdir = posixpath.normpath(posixpath.join(img.workdir, rest))
            img.add_dir(img.workdir)
        elif word == "USER":
            img.user = rest.split(":")[0]
        elif word == "VOLUME":
            img.volumes += json.loads(rest) if rest.startswith("[") else rest.split()
        elif word == "COPY":
            *srcs, dest = shlex.split(rest)
            if any(s.startswith("--") for s in srcs):
                img.problems.append(f"COPY flags are not modelled: {rest}")
                continue
            dest_abs = posixpath.normpath(posixpath.join(img.workdir, dest))
            for s in srcs:
                rel = str((context / s).resolve().relative_to(context.resolve()))
                src_path = context / rel
                if not src_path.exists() or ignored(patterns, rel):
                    img.problems.append(f"COPY {s}: not in the build context")
                    continue
                base = dest_abs if (dest.endswith("/") or len(srcs) > 1) and src_path.is_file() else None
                for f in (f for f in _listed_files(rel) if not ignored(patterns, f)):
                    if src_path.is_file():
                        target = posixpath.join(base, posixpath.basename(f)) if base else dest_abs
                    else:
                        target = posixpath.join(dest_abs, str(Path(f).relative_to(rel)))
                    img.add_file(target)
                    staged[target] = img.origin[target] = f
        elif word == "RUN":  # each RUN is its own shell: a `cd` in it ends with it
            workdir = img.workdir
            for cmd in re.split(r"&&|;", rest):
                _run_step(img, shlex.split(cmd), staged, tmp)
            img.workdir = workdir
    return img


def _run_step(img: Image, argv: list[str], staged: dict[str, str], tmp: Path) -> None:
    if not argv:
        return
    if argv[0] == "cd":
        img.workdir = posixpath.normpath(posixpath.join(img.workdir, argv[1]))
    elif argv[0] == "mkdir":
        for p in argv[1:]:
            if not p.startswith("-"):
                img.add_dir(posixpath.normpath(posixpath.join(img.workdir, p)))
    elif argv[0] == "chown":
        args = [a for a in argv[1:] if not a.startswith("-")]
        user = args[0].split(":")[0]
        for p in args[1:]:
            path = posixpath.normpath(posixpath.join(img.workdir, p))
            img.owner[path] = user
            img.owned.add(path)
    elif argv[0] == "rm":
        for p in argv[1:]:
            if not p.startswith("-"):
                img.remove(posixpath.normpath(posixpath.join(img.workdir, p)))
    elif argv[:2] == ["pip", "install"]:
        targets = [a for a in argv[2:] if not a.startswith("-")]
        editable = "-e" in argv[2:] or "--editable" in argv[2:]
        if targets != ["."]:
            img.problems.append(f"pip install of {targets} is not modelled")
            return
        project = img.workdir
        if editable:  # the packages stay where COPY put them
            img.package_root = project
            return
        src = tmp / "context"
        for target, repo_path in staged.items():
            if _under(target, project):
                dest = src / posixpath.relpath(target, project)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / repo_path, dest)
        for name in _wheel_files(src, tmp):  # flat layout: a package file's path is its path in the tree
            img.add_file(posixpath.join(SITE, name))
            img.origin[posixpath.join(SITE, name)] = name
        img.package_root = SITE
