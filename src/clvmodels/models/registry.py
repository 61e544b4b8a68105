"""Model classes by name: the only classes a saved model file may name.

Every concrete model class defined in ``clvmodels`` is registered when its class statement runs
(:meth:`CLVModel.__init_subclass__`); a class defined elsewhere becomes loadable by
:func:`register_model_class`. Loading a model looks its class up here and never imports a module
or runs code named by the file.
"""

from __future__ import annotations

import inspect

_PACKAGE: dict[str, type] = {}
_REGISTERED: dict[str, type] = {}


def add_package_class(cls: type) -> None:
    """Record a model class of clvmodels itself (called by ``CLVModel.__init_subclass__``, before
    the class knows whether it is abstract: :func:`model_classes` leaves the abstract ones out)."""
    if cls.__module__.startswith("clvmodels."):
        _PACKAGE.setdefault(cls.__name__, cls)


def register_model_class(cls: type) -> type:
    """Make a model class defined outside clvmodels loadable by name (usable as a decorator)."""
    if not (isinstance(cls, type) and callable(getattr(cls, "get_params", None))
            and getattr(cls, "param_names", None)):
        raise TypeError(f"{cls!r} is not a CLVModel subclass.")
    if inspect.isabstract(cls):
        raise TypeError(f"{cls.__name__} is abstract (it leaves formulas of its model kind undefined).")
    _REGISTERED[cls.__name__] = cls
    return cls


def model_classes() -> dict[str, type]:
    """Known model classes by name: clvmodels' own and the registered ones."""
    package = {name: cls for name, cls in _PACKAGE.items() if not inspect.isabstract(cls)}
    return {**package, **_REGISTERED}


__all__ = ["model_classes", "register_model_class"]
