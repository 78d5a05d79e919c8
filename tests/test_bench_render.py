"""`romlab bench native`'s table and plot, from figures written by hand (no NIC needed).

The expected cells are worked out here: packets/s = packets / seconds, Mbit/s = packets/s x size x 8
/ 10^6, each path against the kernel's figure for the same frame size, the C path against the
Python path for the same size and batch."""
from __future__ import annotations

import json

from PIL import Image

from romlab.bench.native import Figure

FIGURES = [
    Figure("kernel", 64, 0, 3_000_000, 3.0),             # 1,000,000 pkt/s, 512.0 Mbit/s
    Figure("c", 64, 32, 2_400_000, 3.0, 2_400_000),      # 800,000 pkt/s, 409.6 Mbit/s
    Figure("python", 64, 32, 300_000, 3.0, 300_000),     # 100,000 pkt/s, 51.2 Mbit/s
    Figure("c", 1514, 1, 90_000, 2.0, 90_000),           # 45,000 pkt/s, 545.04 Mbit/s, no kernel figure
]


def test_native_table_reads_each_path_against_the_kernel_and_c_against_python():
    from romlab.bench.render import native_table

    lines = native_table(FIGURES).splitlines()
    assert lines[0].split() == ["path", "size", "batch", "pkt/s", "Mbit/s", "vs", "kernel", "vs", "python"]
    assert set(lines[1]) == {"-"}
    assert [ln.split() for ln in lines[2:]] == [
        ["kernel", "64", "-", "1000000", "512.0", "1.00x", "-"],
        ["c", "64", "32", "800000", "409.6", "0.80x", "8.0x"],
        ["python", "64", "32", "100000", "51.2", "0.10x", "-"],
        ["c", "1514", "1", "45000", "545.0", "-", "-"],
    ]
    # Columns line up: every cell of a right-aligned column ends where its heading ends.
    end = lines[0].index("pkt/s") + len("pkt/s")
    assert all(ln[:end].endswith(cell) for ln, cell in zip(lines[2:], ("1000000", "800000", "100000", "45000")))


def test_native_plot_carries_every_figure_in_its_metadata(tmp_path):
    from romlab.bench.render import native_plot

    png = tmp_path / "n.png"
    native_plot(FIGURES, str(png))
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] >= 600
        meta = json.loads(im.text["Description"])
    assert [(f["path"], f["size"], f["batch"], f["packets"], f["pps"]) for f in meta] == [
        ("kernel", 64, 0, 3_000_000, 1_000_000.0), ("c", 64, 32, 2_400_000, 800_000.0),
        ("python", 64, 32, 300_000, 100_000.0), ("c", 1514, 1, 90_000, 45_000.0)]
