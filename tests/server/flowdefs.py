"""Flows the server tests serve, in-process (``define``) or as ``flownb serve flowdefs.py:NAME``."""

from __future__ import annotations

from typing import Any

import flownb


def define(name: str, db: Any = None) -> flownb.Flow:
    flow = flownb.Flow(name, db=db)
    if name in ("quick", "ticker"):

        @flow.step
        def one(params: dict[str, Any]) -> Any:
            return params

    elif name == "gated":

        @flow.step
        def prepare(params: dict[str, Any]) -> int:
            print("preparing", params.get("n", 3))
            return int(params.get("n", 3))

        flow.approval("publish_ok", message="Publish {{ prepare }} rows?")

        @flow.step(after=["publish_ok"])
        def publish(prepare: int) -> int:
            return prepare * 2

    elif name == "failing":

        @flow.step
        def boom() -> None:
            raise ValueError("no such table: orders")

    else:
        raise ValueError(name)
    return flow


quick = define("quick")
ticker = define("ticker")
gated = define("gated")
