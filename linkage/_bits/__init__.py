"""Private: tokens, keyed bit positions, bit setting and hardening, vectorised.

Nothing here is public API.  :mod:`linkage.encode` (the native aidlink
scheme) and :mod:`linkage.clkhash_compat` (clkhash v3) are the safe surface
above it; the exact bit-level definitions live in their docstrings.

Layout:

- :mod:`.tokens`    -- n-gram tokenisation of many distinct values at once,
  with token strings de-duplicated across values (numpy, no per-record work).
- :mod:`.prf`       -- AES-256-CMAC (``cryptography``'s AES) of a batch of messages at once.
- :mod:`.hashing`   -- the keyed PRF over distinct messages, counter-mode expansion to
  bit positions, keyed int64 hashes, keyed Fisher--Yates permutations (HMAC-SHA256).
- :mod:`.kernels`   -- the numba loop that sets (and, for balancing, clears)
  bits row by row directly in the packed output.
- :mod:`.hardening` -- XOR-folding, BLIP bit flips, the balancing pattern.
- :mod:`.memo`      -- results kept across the calls of one run (the permutations,
  normalised values).
"""

import sys as _sys


def _numba_without_blas() -> None:
    """Load numba's array functions without its BLAS probe.

    The first numba kernel a process compiles or loads from the cache imports
    ``numba.np.arraymath``, which checks once whether scipy's BLAS is there (for
    ``np.dot`` and ``np.linalg`` inside kernels) by importing ``scipy.linalg``:
    some 0.3-0.4 s at the start of every encode, for functions no kernel here
    uses.  With ``scipy.linalg.cython_blas`` marked absent for that one import
    the probe fails at once and numba simply leaves those functions out (in this
    process; nothing else is touched, and scipy imports normally afterwards).
    """
    if "numba.np.arraymath" in _sys.modules or "scipy.linalg.cython_blas" in _sys.modules:
        return
    _sys.modules["scipy.linalg.cython_blas"] = None  # type: ignore[assignment]
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        del _sys.modules["scipy.linalg.cython_blas"]


_numba_without_blas()
