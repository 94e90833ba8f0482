"""Step kinds, one module each; importing this package registers them all."""

from flownb.steps import agent, approval, http, python, shell, subflow, wasm

__all__ = ["agent", "approval", "http", "python", "shell", "subflow", "wasm"]
