"""The curated public surface: ``flownb.__all__`` is sorted and every name imports."""

from __future__ import annotations

import flownb


def test_all_is_sorted_and_every_name_imports() -> None:
    assert flownb.__all__ == sorted(flownb.__all__)
    for name in flownb.__all__:
        assert getattr(flownb, name) is not None


def test_every_error_is_a_flownb_error_with_a_code() -> None:
    errors = [getattr(flownb, n) for n in flownb.__all__ if isinstance(getattr(flownb, n), type)]
    errors = [e for e in errors if issubclass(e, BaseException)]
    assert len(errors) >= 10
    for error in errors:
        assert issubclass(error, flownb.FlownbError)
        assert error.code
