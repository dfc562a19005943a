"""transformers and diffusers give their loggers a stderr handler of their own on import, so
their warnings bypass the process's formatter (`--log-format json`) and redaction. Here their
records go to the root logger's handlers instead, like every other library's."""

from __future__ import annotations

import importlib


def route_library_logs() -> None:
    """Drop the libraries' own handlers and let their records propagate (idempotent)."""
    for library in ("transformers", "diffusers"):
        try:
            module = importlib.import_module(f"{library}.utils.logging")
        except ImportError:  # the worker extra is not installed: nothing of theirs to route
            continue
        module.disable_default_handler()
        module.enable_propagation()
