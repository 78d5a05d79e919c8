"""How the benches are shown: text tables (rich), PNG plots (matplotlib) and the HTML page.

One rule for every figure shown: it is formatted once, from the very value the JSON carries, at
the precision given by the formatters below, and never rounded before that. So a table cell is
always the JSON's value put through its formatter: a median of 391.548 Mbit/s prints as 391.5,
where rounding it first to two decimals (391.55) and then printing one would give 391.6. The PNG's
text metadata carries the same values rounded to ``METADATA_DECIMALS``, also once, from the JSON's.
"""
from __future__ import annotations

import io
import json

from rich import box
from rich.console import Console
from rich.table import Table

from romlab.bench.firmware import PATHS, SCHEMA
from romlab.lab.http import human_size

METADATA_DECIMALS = 2
PNG_KEY = "romlab.bench-firmware"

# A header rule of ASCII dashes and blanks between columns: plain text that reads the same in a
# terminal, a log file or the JSON's "table" string.
_RULE_UNDER_HEAD = box.Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)


# --- formats ----------------------------------------------------------------------------------

def mbit_s(v: float) -> str:
    return f"{v:.1f}"


def percent(v: float) -> str:
    return f"{v:.0f}%"


def times(v: float, decimals: int = 1) -> str:
    return f"{v:.{decimals}f}x"


def packets_s(v: float) -> str:
    return f"{v:.0f}"


# --- text tables ------------------------------------------------------------------------------

def text_table(columns: list[tuple[str, str]], rows: list[list[str]]) -> str:
    """A plain-text table: ``columns`` are (heading, "left" | "right"), cells are finished strings.

    Rendered by rich without colour or markup (a NIC name with brackets stays as written), as wide
    as its widest cells whatever the terminal's width, without trailing blanks."""
    t = Table(box=_RULE_UNDER_HEAD, show_edge=False, pad_edge=False)
    for heading, justify in columns:
        t.add_column(heading, justify=justify, no_wrap=True)
    for row in rows:
        t.add_row(*row)
    buf = io.StringIO()
    Console(file=buf, width=10_000, color_system=None, force_terminal=False, markup=False, highlight=False,
            emoji=False).print(t)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines())


# --- plots ------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(plt, fig, path: str, metadata: dict[str, str]) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png", metadata=metadata)
    plt.close(fig)


# --- bench native -----------------------------------------------------------------------------

NATIVE_LABELS = {"kernel": "Linux driver (pktgen)", "c": "romlab C path", "python": "romlab pure Python"}


def native_table(figures) -> str:
    """One row per figure; each read against the kernel's figure for its frame size, and the C
    path's also against the Python path's for the same size and batch."""
    kernel = {f.size: f for f in figures if f.path == "kernel"}
    py = {(f.size, f.batch): f for f in figures if f.path == "python"}
    rows = []
    for f in figures:
        k = kernel.get(f.size)
        p = py.get((f.size, f.batch))
        rows.append([f.path, str(f.size), str(f.batch or "-"), packets_s(f.pps), mbit_s(f.mbps),
                     times(f.pps / k.pps, 2) if k and k.pps else "-",
                     times(f.pps / p.pps) if f.path == "c" and p and p.pps else "-"])
    cols = [("path", "left"), ("size", "right"), ("batch", "right"), ("pkt/s", "right"), ("Mbit/s", "right"),
            ("vs kernel", "right"), ("vs python", "right")]
    return text_table(cols, rows)


def native_plot(figures, path: str) -> None:
    """Grouped bars of packets/s: one group per (size, batch), one bar per path; the figures go into
    the PNG's text metadata too."""
    plt = _pyplot()
    kernel = {f.size: f for f in figures if f.path == "kernel"}
    groups = sorted({(f.size, f.batch) for f in figures if f.path != "kernel"})
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups)), 4))
    width = 0.27
    for i, which in enumerate(("kernel", "c", "python")):
        vals = []
        for size, batch in groups:
            if which == "kernel":
                vals.append(kernel[size].pps if size in kernel else 0)
            else:
                match = [f for f in figures if f.path == which and f.size == size and f.batch == batch]
                vals.append(match[0].pps if match else 0)
        ax.bar([g + (i - 1) * width for g in range(len(groups))], vals, width, label=NATIVE_LABELS[which])
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{s} B\nbatch {b}" for s, b in groups])
    ax.set_ylabel("packets/s")
    ax.set_title("Transmit throughput on one NIC")
    ax.legend()
    _save_png(plt, fig, path, {"Description": json.dumps([f.as_dict() for f in figures])})


# --- bench firmware ---------------------------------------------------------------------------

def _stats(nic: dict, path: str) -> dict | None:
    return (nic.get(path) or {}).get("stats")


def _chip(nic: dict, path: str) -> str | None:
    return (nic.get(path) or {}).get("chip")


def firmware_figures(doc: dict) -> list[dict]:
    """One row per NIC for the PNG's metadata: the JSON's figures rounded to METADATA_DECIMALS."""
    rows = []
    for n in doc["nics"]:
        row = {"nic": n["nic"]}
        for p in PATHS:
            st = _stats(n, p)
            row[p] = None if not st else {k: round(v, METADATA_DECIMALS) for k, v in st.items()}
            row[f"{p}_chip"] = _chip(n, p)
        r = n.get("ratio_native_over_undi")
        row["ratio"] = None if r is None else round(r, METADATA_DECIMALS)
        rows.append(row)
    return rows


def firmware_table(doc: dict) -> str:
    """A caption line, then one row per NIC: median Mbit/s and spread of each path, native/UNDI and
    the driver each path reported."""
    caption = (f"{human_size(doc['size'])} over HTTP, {doc['runs']} run(s) per path, {doc['firmware']}, "
               f"{doc['accel'].upper()}; median of runs, spread = (max-min)/median")
    rows = []
    for n in doc["nics"]:
        cells = [n["nic"]]
        for p in PATHS:
            st = _stats(n, p)
            cells += [mbit_s(st["median"]), percent(st["spread_pct"])] if st else ["failed", ""]
        r = n.get("ratio_native_over_undi")
        cells.append("-" if r is None else times(r))
        cells.append(f"{_chip(n, 'native') or '?'} / {_chip(n, 'undi') or '?'}")
        rows.append(cells)
    cols = [("NIC", "left"), ("native Mbit/s", "right"), ("spread", "right"), ("UNDI Mbit/s", "right"),
            ("spread", "right"), ("native/UNDI", "right"), ("drivers", "left")]
    return caption + "\n" + text_table(cols, rows)


def firmware_plot(doc: dict, out: str) -> None:
    """Grouped bars per NIC, native against UNDI, min-max whiskers; the figures go in the PNG's tEXt."""
    plt = _pyplot()
    nics = doc["nics"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(nics) + 2), 4.2), dpi=100)
    width = 0.38
    colours = {"native": "#2b6cb0", "undi": "#c05621"}
    for j, p in enumerate(PATHS):
        xs, ys, lo, hi = [], [], [], []
        for i, n in enumerate(nics):
            st = _stats(n, p)
            if not st:
                continue
            xs.append(i + (j - 0.5) * width)
            ys.append(st["median"])
            lo.append(st["median"] - st["min"])
            hi.append(st["max"] - st["median"])
        bars = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=4, color=colours[p],
                      label="native driver" if p == "native" else "UNDI (undionly.kpxe)")
        for b, y, up in zip(bars, ys, hi):
            ax.annotate(mbit_s(y), (b.get_x() + b.get_width() / 2, y + up), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 3), textcoords="offset points")
    ax.set_xticks(range(len(nics)))
    ax.set_xticklabels([f"{n['nic']}\n{times(n['ratio_native_over_undi'])}"
                        if n.get("ratio_native_over_undi") is not None else n["nic"] for n in nics])
    tops = [_stats(n, p)["max"] for n in nics for p in PATHS if _stats(n, p)]
    if tops:
        ax.set_yscale("log")
        ax.set_ylim(top=max(tops) * 6)  # headroom for the value labels and the legend
    ax.set_ylabel("Mbit/s (median, min-max)")
    ax.set_title(f"HTTP download of {human_size(doc['size'])}, {doc['runs']} run(s), "
                 f"{doc['firmware']} {doc['accel'].upper()}")
    ax.legend(loc="upper right", fontsize=8)
    meta = {PNG_KEY: json.dumps({"schema": SCHEMA, "size": doc["size"], "runs": doc["runs"],
                                 "figures": firmware_figures(doc)}, sort_keys=True),
            "Title": "romlab bench firmware"}
    _save_png(plt, fig, out, meta)


def firmware_html(doc: dict, png_path: str | None) -> str:
    """One self-contained page: the table's figures (same formats as the text table) and the plot."""
    import base64
    import html as h

    img = ""
    if png_path:
        with open(png_path, "rb") as f:
            img = f'<img alt="bench plot" src="data:image/png;base64,{base64.b64encode(f.read()).decode()}">'
    trs = []
    for n in doc["nics"]:
        tds = []
        for p in PATHS:
            st = _stats(n, p)
            tds.append(f"<td>{mbit_s(st['median'])}</td><td>{percent(st['spread_pct'])}</td>" if st
                       else "<td colspan=2>failed</td>")
        r = n.get("ratio_native_over_undi")
        ratio = "" if r is None else times(r)
        trs.append(f"<tr><td>{h.escape(n['nic'])}</td>{''.join(tds)}<td>{ratio}</td>"
                   f"<td>{h.escape(str(_chip(n, 'native')))} / {h.escape(str(_chip(n, 'undi')))}</td></tr>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>romlab bench firmware</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>UNDI against native drivers</h1>
<p>{h.escape(human_size(doc['size']))} over HTTP per run, {doc['runs']} run(s) per path, firmware {h.escape(doc['firmware'])},
{h.escape(doc['accel'].upper())}, started {h.escape(doc['started'])}. Each transfer is timed on the server from the
payload request to the client's confirmation; spread is (max&minus;min)/median over the runs.</p>
<table><tr><th>NIC</th><th>native Mbit/s</th><th>spread</th><th>UNDI Mbit/s</th><th>spread</th><th>native/UNDI</th><th>drivers</th></tr>
{''.join(trs)}
</table>
{img}
</body></html>
"""
