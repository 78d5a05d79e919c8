"""romlab's error classes, which live in ``hw.errors``; ``RomError`` names their base here.

Every ``except RomError`` catches every kind (format, hardware, flash, lab, usage).
"""
from hw.errors import NotAnOptionRom, RomlabError as RomError  # noqa: F401
