"""romlab's error classes, which live in ``hw.errors``; ``RomError`` names their base here.

Every ``except RomError`` catches every kind (format, hardware, flash, lab, usage).
"""
from hw.errors import NotAnOptionRom  # noqa: F401
from hw.errors import RomlabError as RomError  # noqa: F401
