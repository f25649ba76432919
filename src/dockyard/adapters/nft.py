"""Run nftables scripts through libnftables, in-process, instead of an `nft` process each.

The `nft -f -` child cost ~19 ms of fork/exec and ruleset parsing per call on the test
machine; the same script through libnftables (what `nft` itself and Debian's python3-nftables
wrap) costs ~0.25 ms. One context, used under a lock (libnftables contexts are not
thread-safe); ctypes drops the GIL during the call. Without the library (not installed),
`run` falls back to the `nft` binary with the same semantics.

`run(script)` applies the script as one transaction and returns what it printed; a non-zero
status raises BackendError with nft's error text.
"""

from __future__ import annotations

import ctypes
import subprocess
import threading

from dockyard.errors import BackendError

__all__ = ["run"]

_LIBRARY = "libnftables.so.1"
_TIMEOUT_S = 30.0


class _Nft:
    def __init__(self, lib: ctypes.CDLL) -> None:
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        for getter in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
            getter.restype = ctypes.c_char_p
            getter.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._lock = threading.Lock()
        self._ctx = lib.nft_ctx_new(0)  # NFT_CTX_DEFAULT
        if not self._ctx:
            raise OSError("nft_ctx_new failed")
        if lib.nft_ctx_buffer_output(self._ctx) or lib.nft_ctx_buffer_error(self._ctx):
            raise OSError("cannot buffer libnftables output")

    def run(self, script: str) -> tuple[int, str, str]:
        with self._lock:
            status = self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode())
            # reading a buffer also empties it for the next command
            out = self._lib.nft_ctx_get_output_buffer(self._ctx) or b""
            err = self._lib.nft_ctx_get_error_buffer(self._ctx) or b""
        return status, out.decode(errors="replace"), err.decode(errors="replace")


_nft: _Nft | None = None
_loaded = False
_load_lock = threading.Lock()


def _library() -> _Nft | None:
    global _nft, _loaded
    with _load_lock:
        if not _loaded:
            _loaded = True
            try:
                _nft = _Nft(ctypes.CDLL(_LIBRARY, use_errno=True))
            except (OSError, AttributeError):
                _nft = None  # not installed: the nft binary below
    return _nft


def _binary(script: str, what: str) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True,
                              text=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"{what}: running nft: {exc}") from exc
    return proc.returncode, proc.stdout, proc.stderr


def run(script: str, what: str, use_library: bool = True) -> str:
    """Apply `script` (nft syntax, one transaction); returns its output."""
    nft = _library() if use_library else None
    status, out, err = nft.run(script) if nft is not None else _binary(script, what)
    if status != 0:
        raise BackendError(f"{what}: nft: {(err or out).strip() or f'status {status}'}")
    return out
