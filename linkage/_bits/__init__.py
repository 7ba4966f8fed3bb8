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
