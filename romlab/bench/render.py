"""How the benches are shown: text tables (rich), PNG plots (matplotlib) and the HTML page.

One rule for every figure shown: it is formatted once, from the very value the JSON carries, at
the precision given by the formatters below, and never rounded before that. So a table cell is
always the JSON's value put through its formatter: a median of 391.548 Mbit/s prints as 391.5,
where rounding it first to two decimals (391.55) and then printing one would give 391.6. The PNG's
text metadata carries the same values rounded to ``METADATA_DECIMALS``, also once, from the JSON's.

The pictures are read as a person reads them: bar heights on a linear axis from zero, so a bar twice
as tall is twice as fast; error bars (min to max) only where a path had several runs; the ratio
written out under its name. Each PNG's metadata also carries every bar's value and its pixel box in
the saved image (x0, y0, x1, y1 from the top-left corner), so a reader, or a test, can measure the
bars in the pixels and compare them with the values.
"""
from __future__ import annotations

import io
import json

from rich import box
from rich.console import Console
from rich.table import Table

from romlab.bench.firmware import PATHS, SCHEMA
from romlab.bench.native import PATHS as PATHS_NATIVE
from romlab.bench.native import SCHEMA as NATIVE_SCHEMA
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
    fig.savefig(path, format="png", metadata=metadata)
    plt.close(fig)


def _laid_out(fig):
    """Lay the figure out and draw it once, so the bars' pixel boxes are those of the saved PNG
    (savefig draws the same figure again at the same dpi and size)."""
    fig.tight_layout()
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def bar_box(bar, renderer, image_height: int) -> list[int]:
    """A bar's pixel box in the saved image, [x0, y0, x1, y1] from the top-left corner (image rows
    grow downwards, matplotlib's display coordinates upwards)."""
    e = bar.get_window_extent(renderer)
    return [round(e.x0), round(image_height - e.y1), round(e.x1), round(image_height - e.y0)]


def _image_height(fig) -> int:
    return round(fig.get_figheight() * fig.dpi)


def _runs_text(n: int) -> str:
    return "1 run" if n == 1 else f"{n} runs"


# --- bench native -----------------------------------------------------------------------------

NATIVE_LABELS = {"kernel": "Linux driver (pktgen, burst = batch)", "c": "romlab C path", "python": "romlab pure Python"}


def _native_spread(f) -> str:
    return "-" if f is None or f.spread_pct is None else percent(f.spread_pct)


def native_caption(results) -> str:
    """What every figure of the table is, in one line; then one line, marked "*", for each kernel
    driver whose figure is not at romlab's doorbell batching (igbvf writes its tail per frame)."""
    runs = sorted({len(f.runs) for r in results for f in r.figures})
    secs = sorted({round(x.seconds) for r in results for f in r.figures for x in f.runs})
    many = f"median of {'/'.join(map(str, runs)) or '0'} runs" + (f" of about {secs[0]} s" if len(secs) == 1 else "")
    notes = list(dict.fromkeys(f"* {r.kernel_tail_note}" for r in results if r.kernel_tail_note))
    return "\n".join([f"pkt/s counted by the NIC (GPTC; ethtool tx_packets under the kernel's driver), {many}; "
                      "spread = (max-min)/median; the kernel sends with pktgen burst = romlab's batch",
                      *([dma] if (dma := kernel_dma_line(results)) else []), *notes])


def kernel_dma_line(results) -> str | None:
    """The IOMMU domain the kernel driver's runs had, per NIC where they differ: the kernel maps
    every frame through it, romlab maps its buffers once. None where no NIC has an IOMMU group
    (nothing is translated for anyone)."""
    if not any(r.iommu_domain for r in results):
        return None
    said = {}
    for r in results:
        what = r.kernel_dma or "none (no IOMMU)"
        if r.iommu_domain and r.kernel_dma != r.iommu_domain:
            what += f", set for its runs (the group's own: {r.iommu_domain})"
        said.setdefault(what, []).append(r.label)
    if len(said) == 1:
        return f"the kernel driver's IOMMU domain: {next(iter(said))}"
    return "the kernel driver's IOMMU domain: " + "; ".join(f"{', '.join(labels)}: {what}" for what, labels in said.items())


def _native_label(r) -> str:
    """A NIC's name in the table and plot, with "*" where its kernel figure is not like for like."""
    return f"{r.label}*" if r.kernel_tail_note else r.label


def native_table(results) -> str:
    """A caption, then one row per NIC, frame size and batch: the kernel's, the C path's and the
    Python path's median packets/s with their spreads, and the C path against the kernel and
    against Python at the same size and batch. A NIC romlab's driver did not take says why below."""
    rows, notes = [], []
    for r in results:
        keys = []
        for f in r.figures:
            if (f.size, f.batch) not in keys:
                keys.append((f.size, f.batch))
        for size, batch in keys:
            got = {f.path: f for f in r.figures if (f.size, f.batch) == (size, batch)}
            k, c, p = got.get("kernel"), got.get("c"), got.get("python")
            rows.append([_native_label(r), str(size), str(batch),
                         packets_s(k.pps) if k else "-", _native_spread(k),
                         packets_s(c.pps) if c else "-", _native_spread(c),
                         packets_s(p.pps) if p else "-", _native_spread(p),
                         times(c.pps / k.pps, 2) if c and k and k.pps else "-",
                         times(c.pps / p.pps) if c and p and p.pps else "-"])
        if r.romlab_error:
            notes.append(f"{r.label} ({r.bdf}): romlab's driver has no figures: {r.romlab_error}")
    cols = [("NIC", "left"), ("size", "right"), ("batch", "right"), ("kernel pkt/s", "right"), ("spread", "right"),
            ("C pkt/s", "right"), ("spread", "right"), ("Python pkt/s", "right"), ("spread", "right"),
            ("C/kernel", "right"), ("C/Python", "right")]
    return "\n".join([native_caption(results), text_table(cols, rows), *notes])


NATIVE_COLOURS = {"kernel": "#4a5568", "c": "#2b6cb0", "python": "#c05621"}
PNG_KEY_NATIVE = "romlab.bench-native"


def native_plot(results, path: str) -> None:
    """Grouped bars of median packets/s on a linear axis from zero: one group per (NIC, size,
    batch), one bar per path that has a figure there (no bar, rather than a bar of zero, where there
    is none), min-max whiskers where a figure has several runs. The figures and every bar's value and
    pixel box go into the PNG's ``romlab.bench-native`` text chunk."""
    plt = _pyplot()
    groups = []
    for r in results:
        for f in r.figures:
            if (r.label, f.size, f.batch) not in groups:
                groups.append((r.label, f.size, f.batch))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(groups) + 2), 4.8), dpi=100)
    width = 0.27
    drawn = []  # (bar patch, NIC, path, size, batch, median packets/s)
    for i, which in enumerate(PATHS_NATIVE):
        xs, vals, lo, hi, keys = [], [], [], [], []
        for g, (label, size, batch) in enumerate(groups):
            f = next((f for r in results if r.label == label for f in r.figures
                      if (f.path, f.size, f.batch) == (which, size, batch)), None)
            if f is None or not f.runs:
                continue
            xs.append(g + (i - 1) * width)
            vals.append(f.pps)
            several = len(f.runs) > 1
            lo.append(f.pps - f.min_pps if several else 0.0)
            hi.append(f.max_pps - f.pps if several else 0.0)
            keys.append((label, size, batch))
        bars = ax.bar(xs, vals, width, color=NATIVE_COLOURS[which], label=NATIVE_LABELS[which],
                      yerr=[lo, hi] if any(lo) or any(hi) else None, capsize=2,
                      error_kw={"elinewidth": 1, "ecolor": "#111111"})
        drawn += [(b, label, which, size, batch, v) for b, (label, size, batch), v in zip(bars, keys, vals)]
    ax.set_xticks(range(len(groups)))
    starred = {r.label: _native_label(r) for r in results}
    ax.set_xticklabels([f"{starred[label]}\n{s} B\nbatch {b}" for label, s, b in groups], fontsize=7)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    top = max((max(f.max_pps for f in r.figures if f.runs) for r in results if any(f.runs for f in r.figures)),
              default=0)
    ax.set_ylim(0, top * 1.15 if top > 0 else 1)
    ax.set_ylabel("packets/s counted by the NIC (linear, from 0)")
    ax.set_title("Transmit throughput: median of runs, whiskers min-max; kernel at pktgen burst = batch", fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=3, fontsize=8, frameon=False)
    notes = list(dict.fromkeys(f"* {r.kernel_tail_note}" for r in results if r.kernel_tail_note))
    if notes:
        ax.text(0.5, -0.38, "\n".join(notes), transform=ax.transAxes, ha="center", va="top", fontsize=7)
    renderer = _laid_out(fig)
    height = _image_height(fig)
    bars = [{"nic": label, "path": which, "frame_bytes": size, "batch": batch, "median_pps": round(v, METADATA_DECIMALS),
             "colour": NATIVE_COLOURS[which], "box_px": bar_box(b, renderer, height)}
            for b, label, which, size, batch, v in drawn]
    meta = {"schema": NATIVE_SCHEMA, "nics": [r.as_dict() for r in results], "bars": bars,
            "axis": {"scale": "linear", "from": 0, "unit": "packets/s"}}
    _save_png(plt, fig, path, {PNG_KEY_NATIVE: json.dumps(meta, sort_keys=True), "Title": "romlab bench native"})


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
            row[p] = None if not st else {k: v if k == "runs" else round(v, METADATA_DECIMALS) for k, v in st.items()}
            row[f"{p}_chip"] = _chip(n, p)
        r = n.get("ratio_native_over_undi")
        row["ratio_native_over_undi"] = None if r is None else round(r, METADATA_DECIMALS)
        rows.append(row)
    return rows


def spread_cell(st: dict) -> str:
    """The spread of a path's runs, or "1 run" where there was only one and so no spread."""
    return _runs_text(1) if st["runs"] == 1 else percent(st["spread_pct"])


def _payload_text(doc: dict) -> str:
    """What a run downloads: a fixed size, or (sized runs) how long each path's runs were sized to last."""
    if doc.get("min_run_s"):
        return f"runs sized to last {doc['min_run_s']:g} s or more (at least {human_size(doc['size_bytes'])})"
    return human_size(doc["size_bytes"])


def _caption(doc: dict) -> str:
    several = any((_stats(n, p) or {}).get("runs", 0) > 1 for n in doc["nics"] for p in PATHS)
    return (f"{_payload_text(doc)} over HTTP, {_runs_text(doc['runs'])} per path, {doc['firmware']}, "
            f"{doc['accel'].upper()}; " + ("median of runs, spread = (max-min)/median" if several else
                                            "one timed run per path, so no spread"))


def firmware_table(doc: dict) -> str:
    """A caption line, then one row per NIC: median Mbit/s and spread of each path, native/UNDI and
    the driver each path reported."""
    rows = []
    for n in doc["nics"]:
        cells = [n["nic"]]
        for p in PATHS:
            st = _stats(n, p)
            cells += [mbit_s(st["median_mbit_s"]), spread_cell(st)] if st else ["failed", ""]
        r = n.get("ratio_native_over_undi")
        cells.append("-" if r is None else times(r))
        cells.append(f"{_chip(n, 'native') or '?'} / {_chip(n, 'undi') or '?'}")
        rows.append(cells)
    cols = [("NIC", "left"), ("native Mbit/s", "right"), ("spread", "right"), ("UNDI Mbit/s", "right"),
            ("spread", "right"), ("native/UNDI", "right"), ("drivers", "left")]
    return _caption(doc) + "\n" + text_table(cols, rows)


FIRMWARE_COLOURS = {"native": "#2b6cb0", "undi": "#c05621"}
FIRMWARE_LABELS = {"native": "native driver", "undi": "UNDI (undionly.kpxe)"}


def firmware_plot(doc: dict, out: str) -> None:
    """Grouped bars per NIC, native against UNDI, on a linear Mbit/s axis from zero, each bar
    labelled with its median and each group with its native/UNDI ratio. Min-max whiskers only on a
    path with several runs. The figures, and every bar's value and pixel box, go in the PNG's
    ``romlab.bench-firmware`` text chunk."""
    plt = _pyplot()
    nics = doc["nics"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.8 * len(nics) + 2), 4.8), dpi=100)
    width = 0.38
    drawn = []  # (bar patch, NIC, path, median)
    tops = []
    for j, p in enumerate(PATHS):
        xs, ys, lo, hi, names = [], [], [], [], []
        for i, n in enumerate(nics):
            st = _stats(n, p)
            if not st:
                continue
            xs.append(i + (j - 0.5) * width)
            ys.append(st["median_mbit_s"])
            several = st["runs"] > 1
            lo.append(st["median_mbit_s"] - st["min_mbit_s"] if several else 0.0)
            hi.append(st["max_mbit_s"] - st["median_mbit_s"] if several else 0.0)
            names.append(n["nic"])
        bars = ax.bar(xs, ys, width, color=FIRMWARE_COLOURS[p], label=FIRMWARE_LABELS[p])
        for b, x, y, down, up, nic in zip(bars, xs, ys, lo, hi, names):
            if down or up:
                ax.errorbar([x], [y], yerr=[[down], [up]], fmt="none", ecolor="black", elinewidth=1, capsize=4)
            ax.annotate(mbit_s(y), (x, y + up), ha="center", va="bottom", fontsize=8, xytext=(0, 3),
                        textcoords="offset points")
            drawn.append((b, nic, p, y))
            tops.append(y + up)
    ax.set_xticks(range(len(nics)))
    ax.set_xticklabels([f"{n['nic']}\nnative/UNDI {times(n['ratio_native_over_undi'])}"
                        if n.get("ratio_native_over_undi") is not None else f"{n['nic']}\nnative/UNDI -"
                        for n in nics])
    ax.set_xlim(-0.6, len(nics) - 0.4)
    ax.set_ylim(0, max(tops) * 1.15 if tops else 1)  # headroom for the value labels
    several = any((_stats(n, p) or {}).get("runs", 0) > 1 for n in nics for p in PATHS)
    ax.set_ylabel("Mbit/s (linear, from 0)")
    ax.set_title(f"HTTP downloads, {_payload_text(doc)}:\n"
                 + (f"median of {_runs_text(doc['runs'])}, whiskers min-max" if several else "1 run per bar")
                 + f"\n{doc['firmware']} {doc['accel'].upper()}", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
    renderer = _laid_out(fig)
    height = _image_height(fig)
    bars = [{"nic": nic, "path": p, "median_mbit_s": round(y, METADATA_DECIMALS), "colour": FIRMWARE_COLOURS[p],
             "box_px": bar_box(b, renderer, height)} for b, nic, p, y in drawn]
    meta = {PNG_KEY: json.dumps({"schema": SCHEMA, "size_bytes": doc["size_bytes"], "runs": doc["runs"],
                                 "figures": firmware_figures(doc), "bars": bars,
                                 "axis": {"scale": "linear", "from": 0, "unit": "Mbit/s"}}, sort_keys=True),
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
            tds.append(f"<td>{mbit_s(st['median_mbit_s'])}</td><td>{spread_cell(st)}</td>" if st
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
<p>{h.escape(_payload_text(doc))} over HTTP per run, {_runs_text(doc['runs'])} per path, firmware {h.escape(doc['firmware'])},
{h.escape(doc['accel'].upper())}, started {h.escape(doc['started'])}. Each transfer is timed on the server from the
payload request to the client's confirmation; spread is (max&minus;min)/median over the runs.</p>
<table><tr><th>NIC</th><th>native Mbit/s</th><th>spread</th><th>UNDI Mbit/s</th><th>spread</th><th>native/UNDI</th><th>drivers</th></tr>
{''.join(trs)}
</table>
{img}
</body></html>
"""


# --- bench undi -------------------------------------------------------------------------------

PNG_KEY_UNDI = "romlab.bench-undi"
UNDI_PATH_LABELS = {"undi": "ROM's UNDI", "c": "romlab native (C, batch 1)", "kernel": "Linux driver (pktgen)"}
UNDI_COLOURS = {"undi": "#c05621", "c": "#2b6cb0", "kernel": "#4a5568"}
BUCKET_LABELS = {"python_before": "Python before emu_start", "emu": "inside emu_start (ROM code, unicorn, hook crossings)",
                 "bar_callbacks": "device BAR callbacks", "bios": "BIOS services", "ports": "legacy ports",
                 "python_after": "Python after emu_start"}
BUCKET_COLOURS = {"python_before": "#d69e2e", "emu": "#2f855a", "bar_callbacks": "#805ad5", "bios": "#e53e3e",
                  "ports": "#319795", "python_after": "#2c5282"}
BUCKET_SHORT = {"python_before": "py before", "emu": "emu", "bar_callbacks": "device", "bios": "bios", "ports": "ports",
                "python_after": "py after"}


def micros(v: float) -> str:
    return f"{v:.1f}"


def _per_frame(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def undi_table(doc: dict) -> str:
    """The throughput of each path with reference/UNDI, then per frame size UNDI's calls: the
    fast path's time per call split into its measured buckets with the run's unaccounted time on
    its own line, and the trace's counts per call."""
    ref = doc["reference"]["path"]
    head = (f"{doc['input']} [{doc['id']}], via {doc['via']}, ROM {doc['rom']['from']} "
            f"({doc['rom']['size']} bytes); reference: {doc['reference']['driver'] or 'none'}")
    ratio = {r["frame_bytes"]: r["reference_over_undi"] for r in doc["ratios"]}
    rows = []
    for f in doc["figures"]:
        r = ratio.get(f["frame_bytes"]) if f["path"] == ref else None
        rows.append([f["path"], str(f["frame_bytes"]), packets_s(f["pps"]), f"{f['mbit_s']:.2f}",
                     "-" if r is None else times(r)])
    out = [head, text_table([("path", "left"), ("size", "right"), ("pkt/s", "right"), ("Mbit/s", "right"),
                             ("reference/UNDI", "right")], rows)]
    from drivers.undi.trace import BUCKETS

    cols = [("call", "left"), ("/frame", "right"), ("us/call", "right"), ("median", "right"),
            *((BUCKET_SHORT[b], "right") for b in BUCKETS)]
    tcols = [("call", "left"), ("us/call", "right"), ("median", "right"), ("x fast", "right"), ("instr", "right"), ("switches", "right"),
             ("dev rd", "right"), ("dev wr", "right"), ("dev us", "right")]
    for s in doc["undi"]["sizes"]:
        fast, trace = s["fast"], s["trace"]
        calls = fast["calls"] + [doc["undi"]["empty_call"]]
        rows = [[c["call"], _per_frame(c["calls_per_frame"]), micros(c["mean_us_per_call"]),
                 micros(c["median_us_per_call"]), *(micros(c["buckets_us_per_call"][b]) for b in BUCKETS)]
                for c in calls]
        wall = fast["wall_ns"]
        share = percent(100 * fast["unaccounted_ns"] / wall) if wall else "-"
        out += ["", (f"UNDI calls, {s['frame_bytes']}-byte frames, fast path: {fast['frames']} frames in "
                     f"{wall / 1e9:.3f} s; buckets in us per call (measured at their boundaries, disjoint)"),
                text_table(cols, rows),
                (f"unaccounted: {fast['unaccounted_ns'] / 1e6:.3f} ms of {wall / 1e6:.3f} ms wall ({share}): "
                 "the loop's own work between calls")]
        trows = [[c["call"], micros(c["mean_us_per_call"]), micros(c["median_us_per_call"]),
                  "-" if c["trace_overhead_factor"] is None else times(c["trace_overhead_factor"]),
                  f"{c['instructions_per_call']:.0f}", f"{c['mode_switches_per_call']:.1f}",
                  f"{c['device_reads_per_call']:.1f}", f"{c['device_writes_per_call']:.1f}",
                  micros(c["device_us_per_call"])] for c in trace["calls"]]
        out += [f"trace ({trace['frames']} frames): per call; x fast = median traced / median fast",
                text_table(tcols, trows)]
    return "\n".join(out)


def undi_plot(doc: dict, path: str) -> None:
    """Two panels on linear axes from zero: packets/s per frame size for UNDI and the reference
    (grouped bars), and UNDI's fast-path time per call stacked by bucket, one bar per call and
    frame size. Every bar's (and bucket segment's) value and pixel box go in the PNG's
    ``romlab.bench-undi`` text chunk, with the document's figures."""
    from drivers.undi.trace import BUCKETS

    plt = _pyplot()
    sizes = [s["frame_bytes"] for s in doc["undi"]["sizes"]]
    paths = ["undi"] + [p for p in ("c", "kernel") if any(f["path"] == p for f in doc["figures"])]
    stacks = [(c["call"], s["frame_bytes"], c) for s in doc["undi"]["sizes"] for c in s["fast"]["calls"]]
    stacks.append((doc["undi"]["empty_call"]["call"], None, doc["undi"]["empty_call"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(10.0, 4 + 0.9 * len(stacks)), 5.2), dpi=100,
                                   gridspec_kw={"width_ratios": [1, max(1.5, 0.35 * len(stacks))]})
    width = 0.8 / len(paths)
    drawn = []
    for i, p in enumerate(paths):
        for g, size in enumerate(sizes):
            f = next((f for f in doc["figures"] if f["path"] == p and f["frame_bytes"] == size), None)
            if f is None:
                continue
            (b,) = ax1.bar([g + (i - (len(paths) - 1) / 2) * width], [f["pps"]], width,
                           color=UNDI_COLOURS[p], label=UNDI_PATH_LABELS[p] if g == 0 or not drawn else None)
            drawn.append((b, p, size, f["pps"]))
    ratio = {r["frame_bytes"]: r["reference_over_undi"] for r in doc["ratios"]}
    ax1.set_xticks(range(len(sizes)))
    ax1.set_xticklabels([f"{s} B" + (f"\nref/UNDI {times(ratio[s])}" if ratio.get(s) else "") for s in sizes])
    ax1.set_xlim(-0.6, len(sizes) - 0.4)
    top = max((v for *_, v in drawn), default=0)
    ax1.set_ylim(0, top * 1.15 if top > 0 else 1)
    ax1.set_ylabel("packets/s (linear, from 0)")
    ax1.set_title("Transmit, one run per bar", fontsize=10)
    handles, labels = ax1.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax1.legend(uniq.values(), uniq.keys(), loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8,
               frameon=False)
    segments = []
    for x, (call, size, c) in enumerate(stacks):
        bottom = 0.0
        for b in BUCKETS:
            v = c["buckets_us_per_call"][b]
            (patch,) = ax2.bar([x], [v], 0.6, bottom=bottom, color=BUCKET_COLOURS[b],
                               label=BUCKET_LABELS[b] if x == 0 else None)
            segments.append((patch, call, size, b, v, bottom))
            bottom += v
    ax2.set_xticks(range(len(stacks)))
    ax2.set_xticklabels([f"{call.removeprefix('UNDI_')}\n{size} B" if size else call.replace(" (", "\n(")
                         for call, size, _ in stacks], fontsize=7)
    ax2.set_xlim(-0.6, len(stacks) - 0.4)
    ttop = max((sum(c["buckets_us_per_call"].values()) for *_, c in stacks), default=0)
    ax2.set_ylim(0, ttop * 1.1 if ttop > 0 else 1)
    ax2.set_ylabel("us per call, mean (linear, from 0)")
    ax2.set_title("UNDI time per call by measured bucket (fast path)", fontsize=10)
    ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=7, frameon=False)
    fig.suptitle(f"romlab bench undi: {doc['input']} [{doc['id']}]", fontsize=11)
    renderer = _laid_out(fig)
    height = _image_height(fig)
    bars = [{"panel": "throughput", "path": p, "frame_bytes": size, "pps": round(v, METADATA_DECIMALS),
             "colour": UNDI_COLOURS[p], "box_px": bar_box(b, renderer, height)} for b, p, size, v in drawn]
    segs = [{"panel": "calls", "call": call, "frame_bytes": size, "bucket": bk,
             "us_per_call": round(v, METADATA_DECIMALS), "bottom_us": round(bot, METADATA_DECIMALS),
             "colour": BUCKET_COLOURS[bk], "box_px": bar_box(pt, renderer, height)}
            for pt, call, size, bk, v, bot in segments]
    meta = {"schema": doc["schema"], "input": doc["input"], "id": doc["id"], "figures": doc["figures"],
            "ratios": doc["ratios"], "bars": bars, "segments": segs,
            "axes": {"throughput": {"scale": "linear", "from": 0, "unit": "packets/s"},
                     "calls": {"scale": "linear", "from": 0, "unit": "us per call"}}}
    _save_png(plt, fig, path, {PNG_KEY_UNDI: json.dumps(meta, sort_keys=True), "Title": "romlab bench undi"})
