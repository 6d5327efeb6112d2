"""Pictures (matplotlib, no display needed): :mod:`.explain` draws what each entity of a tweet
looked at (``mner explain``)."""

from __future__ import annotations

__all__: list[str] = []
