"""Step kinds, one module each; importing this package registers them all."""

from flownb.steps import approval, python, subflow

__all__ = ["approval", "python", "subflow"]
