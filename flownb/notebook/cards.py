"""Approval cards: a message, a comment box, Approve and Reject.

A click only posts the decision to the engine (``Run.approve``/``reject``
with ``via="widget"``, or the store's inbox for a run owned by another
process); the card changes when the decision comes back as an event.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from flownb.notebook.state import Card

Decide = Callable[[str, str, str | None], None]  # (step, "approved" | "rejected", comment)


class CardWidget:
    def __init__(self, card: Card, decide: Decide) -> None:
        self.step = card.step
        self._decide = decide
        self.title = widgets.HTML()
        self.comment = widgets.Textarea(placeholder="comment (optional)", layout=widgets.Layout(width="100%"))
        self.approve = widgets.Button(description="Approve", button_style="success", icon="check")
        self.reject = widgets.Button(description="Reject", button_style="danger", icon="times")
        self.status = widgets.HTML()
        self.approve.on_click(lambda _b: self._click("approved"))
        self.reject.on_click(lambda _b: self._click("rejected"))
        self.box = widgets.VBox([self.title, self.comment, widgets.HBox([self.approve, self.reject]), self.status])
        self.box.add_class("flownb-card")  # themed by the view's stylesheet (assets.py)
        self._shown: tuple[Any, ...] = ()
        self.update(card)

    def _click(self, decision: str) -> None:
        # runs on the kernel's shell thread: post the decision, draw nothing
        self._decide(self.step, decision, self.comment.value or None)

    def update(self, card: Card) -> None:
        """Redraw from the card's state (painter thread only)."""
        key = (card.message, card.decision, card.decided_by, card.via, card.comment, card.error)
        if key == self._shown:
            return
        self._shown = key
        self.title.value = (
            f"<b>Approval <code>{html.escape(card.step)}</code></b>: {html.escape(card.message or '')}"
        )
        if card.decision is not None:
            when = card.decided_at.strftime("%Y-%m-%d %H:%M:%S %Z") if card.decided_at else ""
            comment = f": “{html.escape(card.comment)}”" if card.comment else ""
            status = "succeeded" if card.decision == "approved" else "failed"
            self.status.value = (
                f"<span class='flownb-pill flownb-st-{status}'>{html.escape(card.decision)}</span> by "
                f"{html.escape(card.decided_by or '?')} at {html.escape(when)} via {html.escape(card.via or '?')}"
                f"{comment}"
            )
            for w in (self.approve, self.reject, self.comment):
                w.disabled = True
            self.box.add_class("flownb-decided")
        elif card.error:
            self.status.value = f"<span class='flownb-error'>{html.escape(card.error)}</span>"
        else:
            self.status.value = "<i class='flownb-muted'>waiting for a decision</i>"
