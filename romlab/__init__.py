"""romlab: a workbench for network-card option ROMs and their drivers."""

__version__ = "0.1.0"
