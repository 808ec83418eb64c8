"""The one exception family the CLI turns into a one-line message."""


class NeucodexError(Exception):
    """A user-facing error: the message names what is wrong and what to do."""


class UnknownNameError(NeucodexError, KeyError):
    """A name (model, split point, dataset, format) that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidArgumentError(NeucodexError, ValueError):
    """A value a builder or parser cannot use (a bad option, shape, size or count)."""


class Interrupted(NeucodexError):
    """Ctrl-C during long work: what was saved, and how to go on (exit status 130)."""


def short(text: str, limit: int = 40) -> str:
    """A string from a file or a client as it may be echoed in a message: bounded, one short line."""
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


class CodecError(NeucodexError):
    """A packet could not be produced or read; the message says why."""
