"""The one place that configures numba: every kernel is compiled with these flags.

``cache=True`` keeps the compiled machine code on disk so the CLI does not recompile at every
start. No ``fastmath`` (it would allow reassociation, so results could depend on the compiler's
choices) and never ``nnan``/``ninf``.
"""

from __future__ import annotations

from numba import njit


def kernel(fn):
    """Compile ``fn`` as a pure numba kernel (nopython, cached, releases the GIL)."""
    return njit(cache=True, nogil=True)(fn)


def inline_kernel(fn):
    """A small helper kernel that numba inlines into its callers."""
    return njit(cache=True, nogil=True, inline="always")(fn)
