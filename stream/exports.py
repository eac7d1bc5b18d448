"""Package ``__init__`` files that name what they offer without importing it (PEP 562).

``import spikereveal.engine`` must not load torch, and ``spikereveal --help`` (which imports
``spikereveal.stream.errors``, hence ``spikereveal/stream/__init__.py``) must not load NumPy and
ZeroMQ: each package lists its public names in ``__all__`` and imports a name's module only when
the name is first used (``spikereveal.engine.LDN`` loads torch; ``spikereveal.engine.tfp`` does not).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps each module to its public names.

    Examples:
        >>> getattr_, dir_ = lazy_exports("demo", {"spikereveal.stream.errors": ("SpikeRevealError",)})
        >>> getattr_("SpikeRevealError").__name__
        'SpikeRevealError'
        >>> getattr_("nothing")
        Traceback (most recent call last):
        ...
        AttributeError: module 'demo' has no attribute 'nothing'
    """

    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted(module_of)

    return __getattr__, __dir__
