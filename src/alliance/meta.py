"""``alliance.meta``: convenience alias of :mod:`alliance.research.meta`.

Its names are copied here except the chart functions, which (as there) load Altair only
when first used: a star import would load it at once.
"""

from typing import Any

from alliance.research import meta as _meta

__all__ = list(_meta.__all__)
globals().update({name: getattr(_meta, name) for name in __all__ if name not in _meta._PLOTS})


def __getattr__(name: str) -> Any:
    return getattr(_meta, name)
