"""The one error type romlab raises for bad input.

Every verb turns a ``RomError`` into a single line on stderr and a non-zero exit,
so nothing below the CLI ever needs to print or exit by itself.
"""


class RomError(Exception):
    """Input romlab cannot use; ``exit_code`` is what the CLI exits with."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class NotAnOptionRom(RomError):
    """The bytes hold no PCI expansion ROM or legacy option ROM at offset 0."""
