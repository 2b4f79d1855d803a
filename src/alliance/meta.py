"""``alliance.meta``: convenience alias of :mod:`alliance.research.meta`."""

from alliance.research.meta import *  # noqa: F403
from alliance.research.meta import __all__ as __all__
