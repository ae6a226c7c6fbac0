"""Named operators that a recipe can list.

A recipe's ``curation`` list names operators and their parameters, e.g.
``{op: toxicity, threshold: 0.8}``; ``build_stage`` turns one entry into a Stage.
Operator modules in this package register themselves with ``@register("name")``;
every module of the package is imported on first use, so a recipe never depends
on import order. Modules must therefore keep heavy imports (onnxruntime, models)
inside the factory, not at module level.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from streams.stages.base import Stage

StageFactory = Callable[..., Stage]
_REGISTRY: dict[str, StageFactory] = {}



def register(name: str) -> Callable[[StageFactory], StageFactory]:
    def deco(factory: StageFactory) -> StageFactory:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"operator {name!r} registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def _load_all() -> None:
    import streams.stages as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{info.name}")


def operator_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def build_stage(spec: dict[str, Any]) -> Stage:
    """Build a stage from a recipe entry ``{"op": name, **params}``."""
    _load_all()
    params = dict(spec)
    name = params.pop("op", None)
    if name not in _REGISTRY:
        raise ValueError(f"unknown operator {name!r}; known: {', '.join(sorted(_REGISTRY)) or 'none'}")
    try:
        return _REGISTRY[name](**params)
    except TypeError as exc:
        raise ValueError(f"operator {name!r}: bad parameters {params}: {exc}") from None
