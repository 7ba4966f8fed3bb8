"""Low-level cryptography for aidlink.  Private: import the safe surfaces instead.

The safe surfaces are :mod:`linkage.keyfile` (encrypted key files) and
:mod:`linkage.package` (signed and sealed packages).  Everything here is built
from ``cryptography``'s primitives only -- no hand-rolled cipher, MAC or KDF:

* :mod:`._hpke` -- RFC 9180 HPKE (base mode) suites and the receiving keys;
* :mod:`._stream` -- STREAM-style chunked AEAD (Hoang, Reyhanitabar, Rogaway,
  Vizár 2015) over ChaCha20-Poly1305;
* :mod:`._passphrase` -- scrypt + ChaCha20-Poly1305 sealed key-file containers;
* :mod:`._files` -- atomic, private file writes;
* :mod:`._util` -- strict base64 and constant-time comparison.

Nothing here prints, logs a secret, or puts one in a repr or a message.
"""
