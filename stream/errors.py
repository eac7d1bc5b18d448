"""The one root of every error the project raises for bad input (kornia's ``BaseError``).

Each folder keeps its own family at its boundary (``SpikeFormatError`` for spike data,
``DatasetError`` for dataset layouts, ``ProtocolError`` for the wire, ...), and every family
subclasses :class:`SpikeRevealError`. The CLI catches the root and prints one line; anything
else is a bug and keeps its traceback. It lives in ``stream/``, the bottom layer every folder
may import, and is a ValueError so that callers written against ValueError keep working.
"""

from __future__ import annotations

__all__ = ["SpikeRevealError"]


class SpikeRevealError(ValueError):
    """Bad input: a file, field or value that cannot be used, with what was expected."""
