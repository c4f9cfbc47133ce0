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


def loop_kernel(fn):
    """A kernel that creates no arrays, compiled without numba's reference counting (NRT).

    numba inlines an :func:`inline_kernel` by binding its array arguments to new variables, and
    with NRT every such binding is an atomic increment and decrement of the array's reference
    count: on each call, in the innermost loops. Measured on the histogram update alone: 9.9 ns
    per element with NRT, 3.9 ns without, the same results bit for bit. A loop kernel therefore
    receives every array it works in from its caller (an ordinary :func:`kernel` or Python), which
    keeps the arrays alive while it runs. Creating an array inside one fails at compile time.
    """
    return njit(cache=True, nogil=True, _nrt=False)(fn)
