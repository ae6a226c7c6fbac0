"""Named operators that a recipe can list.

A recipe's ``curation`` list names operators and their parameters, e.g.
``{op: toxicity, threshold: 0.8}``; ``build_stage`` turns one entry into a Stage.
Operator modules in this package register themselves with ``@register("name")``;
every module of the package is imported on first use, so a recipe never depends
on import order. Modules must therefore keep heavy imports (onnxruntime, models)
inside the factory, not at module level.

Worker context: an operator may take parameters that a running worker knows
(``bootstrap``, ``namespace``). It declares them at registration
(``@register("budget_prune", context=("bootstrap", "namespace"))``) and
``build_stage(spec, context=...)`` fills them into a *copy* of the entry where the
entry does not set them itself. The recipe is never changed: its version hashes
the entries as written, so the same recipe has the same version in every worker.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streams.stages.base import Stage

StageFactory = Callable[..., Stage]
_REGISTRY: dict[str, StageFactory] = {}
# operator -> (context parameters it takes, entry parameters that make it need none)
_CONTEXT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def register(name: str, *, context: Sequence[str] = (),
             context_unless: Sequence[str] = ()) -> Callable[[StageFactory], StageFactory]:
    """``context``: worker parameters the operator takes (see :func:`with_context`);
    ``context_unless``: entry parameters with which it needs none of them."""
    def deco(factory: StageFactory) -> StageFactory:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"operator {name!r} registered twice")
        _REGISTRY[name] = factory
        if context:
            _CONTEXT[name] = (tuple(context), tuple(context_unless))
        return factory

    return deco


def _load_all() -> None:
    import streams.stages as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{info.name}")


def operator_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def default_operator_names() -> list[str]:
    """The operators a tool runs when the user names none (``foundry score``): every registered
    operator that needs no worker context. Each must build with its default parameters: one
    that cannot (a model file missing from the install) is an error, never a quiet skip."""
    _load_all()
    return sorted(n for n in _REGISTRY if n not in _CONTEXT)


def with_context(spec: Mapping[str, Any], context: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of the recipe entry with the worker's ``context`` values filled in for the
    context parameters its operator declared, unless the entry sets them (or sets one of the
    operator's ``context_unless`` parameters). ``spec`` itself is left as it is."""
    _load_all()
    params = dict(spec)
    keys, unless = _CONTEXT.get(params.get("op"), ((), ()))
    if not context or any(k in params for k in unless):
        return params
    for key in keys:
        if key not in params and context.get(key) is not None:
            params[key] = context[key]
    return params


def build_stage(spec: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> Stage:
    """Build a stage from a recipe entry ``{"op": name, **params}``; ``context`` (e.g. the
    worker's ``bootstrap`` and ``namespace``) goes to operators that take it (:func:`with_context`)."""
    params = with_context(spec, context)
    name = params.pop("op", None)
    if name not in _REGISTRY:
        raise ValueError(f"unknown operator {name!r}; known: {', '.join(sorted(_REGISTRY)) or 'none'}")
    try:
        return _REGISTRY[name](**params)
    except TypeError as exc:
        raise ValueError(f"operator {name!r}: bad parameters {params}: {exc}") from None
