"""One module per CLI verb.

Each module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Heavy imports (capstone, pefile, cffi modules) happen inside ``run`` so that
``romlab inspect`` starts fast.
"""
