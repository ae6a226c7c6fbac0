"""Check the commands the pages show against what they name, without spawning anything:
``foundry`` command lines against the click command tree, ``make`` targets and variables
against the Makefile, ``python bench/x.py`` options against the script's ``add_argument``
calls (read with ``ast``). Every check returns a list of problems (empty when fine).
"""
from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from pathlib import Path

import click

from tests.docs.markdown_pages import ROOT

FOUNDRY_PROGRAMS = {"foundry", ".venv/bin/foundry"}
PYTHON_PROGRAMS = re.compile(r"^(\.venv/bin/)?python(3(\.\d+)?)?$")
# Characters that mark a documented value as a placeholder, not a literal to type-check.
PLACEHOLDER = re.compile(r"[<>{}\[\]*$]|\.\.\.|VERSION|RANGE")


# --- foundry: the click tree -------------------------------------------------------------

def _takes_value(param: click.Parameter) -> bool:
    return isinstance(param, click.Option) and not param.is_flag and not param.count


def _check_value(param: click.Option, value: str, where: str) -> list[str]:
    if PLACEHOLDER.search(value):
        return []
    checked = (click.Choice, click.types.IntParamType, click.types.FloatParamType, click.types.BoolParamType)
    if not isinstance(param.type, checked):
        return []
    try:
        param.type.convert(value, param, None)
    except click.BadParameter as exc:
        return [f"{where}: {param.opts[0]} {value!r}: {exc.message}"]
    return []


@dataclass
class ParsedArgs:
    options: dict[str, list[str]]  # the option's first name -> the values given (empty for a flag)
    positional: list[str]
    problems: list[str]
    asked_help: bool


def parse_args(cmd: click.Command, args: list[str], where: str = "?", fragment: bool = False) -> ParsedArgs:
    """Split a documented command's arguments as click would, noting every option click would refuse.

    ``fragment``: a command named in prose (`foundry worker --compression`), where an option
    may stand without its value."""
    options: dict[str, click.Parameter] = {}
    for p in cmd.params:
        if isinstance(p, click.Option):
            for name in p.opts + p.secondary_opts:
                options[name] = p
    help_names = set(cmd.get_help_option_names(click.Context(cmd)))
    out = ParsedArgs({}, [], [], False)
    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        if tok == "--":
            out.positional += args[i:]
            break
        if tok in help_names:
            out.asked_help = True
            continue
        if not tok.startswith("-") or tok == "-" or re.fullmatch(r"-\d+(\.\d+)?", tok):
            out.positional.append(tok)
            continue
        name, eq, value = tok.partition("=") if tok.startswith("--") else (tok, "", "")
        param = options.get(name)
        if param is None and not tok.startswith("--") and tok[:2] in options:  # -ovalue
            name, value, eq = tok[:2], tok[2:], "="
            param = options[name]
        if param is None:
            known = ", ".join(sorted(n for n in options if n.startswith("--")))
            out.problems.append(f"{where}: {name} is not an option of {cmd.name!r} (it has: {known})")
            if not eq and i < len(args) and not args[i].startswith("-"):
                i += 1  # its value, most likely: not a stray argument as well
            continue
        values: list[str] = []
        if not _takes_value(param):
            if eq:
                out.problems.append(f"{where}: {name} is a flag; it takes no value")
        else:
            values = [value] if eq else []
            while len(values) < max(param.nargs, 1):
                if i >= len(args):
                    if not fragment:
                        out.problems.append(f"{where}: {name} needs a value")
                    break
                values.append(args[i])
                i += 1
            for v in values:
                out.problems += _check_value(param, v, where)
        out.options.setdefault(param.opts[0], []).extend(values)
    return out


def _check_params(cmd: click.Command, args: list[str], where: str, fragment: bool = False) -> list[str]:
    parsed = parse_args(cmd, args, where, fragment)
    problems = parsed.problems
    if parsed.asked_help or fragment:
        return problems
    positional = parsed.positional
    arguments = [p for p in cmd.params if isinstance(p, click.Argument)]
    most = sum(math.inf if p.nargs < 0 else p.nargs for p in arguments)
    least = sum(max(p.nargs, 1) for p in arguments if p.required)
    if len(positional) > most:
        problems.append(f"{where}: {cmd.name!r} takes {most} argument(s), got {positional}")
    elif len(positional) < least:
        names = " ".join(p.human_readable_name for p in arguments)
        problems.append(f"{where}: {cmd.name!r} needs argument(s) {names}, got {positional}")
    return problems


def resolve_foundry(args: list[str], root: click.Command) -> tuple[click.Command | None, list[str], list[str]]:
    """Walk the subcommand chain: (command, its name path, the remaining args) or None if a name is wrong."""
    cmd, path, i = root, ["foundry"], 0
    while isinstance(cmd, click.Group) and i < len(args) and not args[i].startswith("-"):
        sub = cmd.get_command(click.Context(cmd), args[i])
        if sub is None:
            return None, path + [args[i]], args[i + 1:]
        cmd, path, i = sub, path + [args[i]], i + 1
    return cmd, path, args[i:]


def check_foundry(argv: list[str], root: click.Command, where: str = "?", fragment: bool = False) -> list[str]:
    cmd, path, rest = resolve_foundry(argv[1:], root)
    if cmd is None:
        parent, _, _ = resolve_foundry(path[1:-1], root)
        subs = ", ".join(parent.list_commands(click.Context(parent))) if isinstance(parent, click.Group) else ""
        return [f"{where}: {' '.join(path[:-1])} has no subcommand {path[-1]!r} (it has: {subs})"]
    # a bare group (`foundry kafka`) is a fragment too: it lists its subcommands
    return _check_params(cmd, rest, where, fragment or isinstance(cmd, click.Group))


# --- make, python ---------------------------------------------------------------------------

def makefile_targets(makefile: Path) -> tuple[set[str], set[str]]:
    """(targets, variables) the Makefile defines or reads."""
    text = makefile.read_text(encoding="utf-8")
    targets: set[str] = set()
    for m in re.finditer(r"^([^\s#=:][^:=\n]*?)\s*::?(?![=])", text, re.M):
        targets.update(t for t in m.group(1).split() if "$" not in t)
    variables = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)\s*[?:+]?=", text, re.M))
    variables |= set(re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", text))
    return targets, variables


def check_make(argv: list[str], makefile: Path, where: str = "?") -> list[str]:
    targets, variables = makefile_targets(makefile)
    problems = []
    for tok in argv[1:]:
        if tok.startswith("-"):
            continue
        if "=" in tok:
            var = tok.split("=", 1)[0]
            if var not in variables:
                problems.append(f"{where}: make variable {var} is not used by the Makefile")
        elif tok not in targets:
            problems.append(f"{where}: make target {tok!r} is not in the Makefile "
                            f"(it has: {', '.join(sorted(t for t in targets if not t.startswith('.')))})")
    return problems


def argparse_spec(script: Path) -> tuple[dict[str, str], list[list[str] | None]]:
    """A script's options ({'--steps': 'one' | 'flag' | 'many'}) and positionals (their choices or None)."""
    options: dict[str, str] = {"-h": "flag", "--help": "flag"}
    positionals: list[list[str] | None] = []
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"):
            continue
        names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        kw = {k.arg: k.value for k in node.keywords}
        action = kw.get("action")
        nargs = kw.get("nargs")
        kind = "one"
        if isinstance(action, ast.Constant) and action.value in ("store_true", "store_false", "count"):
            kind = "flag"
        elif isinstance(nargs, ast.Constant) and nargs.value in ("*", "+"):
            kind = "many"
        if names and names[0].startswith("-"):
            options.update({n: kind for n in names})
        elif names:
            choices = kw.get("choices")
            positionals.append(ast.literal_eval(choices) if choices is not None else None)
    return options, positionals


def check_python(argv: list[str], root: Path = ROOT, where: str = "?") -> list[str]:
    args = argv[1:]
    while args and args[0] in ("-u", "-O", "-B"):
        args = args[1:]
    if not args:
        return []
    if args[0] == "-m":
        import importlib.util

        if len(args) < 2:
            return [f"{where}: python -m without a module"]
        try:
            found = importlib.util.find_spec(args[1]) is not None
        except ModuleNotFoundError:
            found = False
        return [] if found else [f"{where}: no module {args[1]!r}"]
    script = root / args[0]
    if not script.is_file():
        return [f"{where}: no script {args[0]}"]
    options, positionals = argparse_spec(script)
    problems, free, i = [], [], 1
    while i < len(args):
        tok = args[i]
        i += 1
        if tok.startswith("-") and tok != "-":
            name = tok.split("=", 1)[0]
            kind = options.get(name)
            if kind is None:
                problems.append(f"{where}: {name} is not an option of {args[0]} "
                                f"(it has: {', '.join(sorted(o for o in options if o.startswith('--')))})")
                if "=" not in tok and i < len(args) and not args[i].startswith("-"):
                    i += 1  # its value, most likely
            elif kind == "one" and "=" not in tok:
                i += 1
            elif kind == "many":
                while i < len(args) and not args[i].startswith("-"):
                    i += 1
        else:
            free.append(tok)
    if len(free) > len(positionals):
        problems.append(f"{where}: {args[0]} takes {len(positionals)} positional argument(s), got {free}")
    for value, choices in zip(free, positionals):
        if choices is not None and value not in choices:
            problems.append(f"{where}: {args[0]}: {value!r} is not one of {choices}")
    return problems


# --- YAML: recipes, trainer and factory configs -------------------------------------------

def _contracts() -> list[tuple[str, type]]:
    from foundry.factory_config import FactoryConfig
    from schemas.recipe import Recipe
    from trainer.config import TrainerConfig

    return [("recipe", Recipe), ("trainer config", TrainerConfig), ("factory config", FactoryConfig)]


def _field_names(model: type) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()} | set(model.model_fields)


def check_yaml(text: str, where: str = "?") -> list[str]:
    """A YAML block parses and validates against the contract whose fields it uses (a snippet of a
    recipe, a trainer config or a factory config: every field it leaves out has a default)."""
    import yaml
    from pydantic import ValidationError

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [f"{where}: not valid YAML: {exc}"]
    if not isinstance(data, dict):
        return []
    data = {k: v for k, v in data.items() if k != "schema_version"}  # a recipe file's format version
    for name, model in _contracts():
        if set(data) <= _field_names(model):
            try:
                model.model_validate(data)
            except ValidationError as exc:
                return [f"{where}: invalid {name}: {exc}"]
            return _check_operators(data, where) if name == "recipe" else []
    return [f"{where}: fields {sorted(data)} fit no recipe, trainer config or factory config"]


def _check_operators(recipe: dict, where: str) -> list[str]:
    from streams.stages.registry import operator_names

    known = set(operator_names())
    return [f"{where}: curation op {spec.get('op')!r} is not a registered operator ({', '.join(sorted(known))})"
            for spec in recipe.get("curation") or [] if spec.get("op") not in known]
