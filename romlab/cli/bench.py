"""``romlab bench``: measurements. ``bench firmware`` compares a NIC's UNDI path with native drivers
under QEMU, ``bench native`` NICs' transmit paths, ``bench undi`` a NIC's own UNDI driver (run
from its ROM in user space) against a reference driver on the same device."""
from __future__ import annotations

import math

NAME = "bench"
HELP = "measure drivers: `bench firmware` times HTTP downloads through a ROM's UNDI against native drivers"
DESCRIPTION = """\
Measure how fast drivers move data: a ROM's UNDI against native drivers under QEMU (firmware),
real NICs' transmit paths against their kernel drivers (native), or a NIC's own UNDI driver
run from its ROM in user space against a reference driver on the same NIC, call by call (undi). Each prints a table and can
write a PNG plot."""
EXAMPLES = [
    ("romlab bench firmware --nic e1000,virtio-net --runs 3 --plot firmware.png",
     "UNDI against native drivers on two NIC models, three downloads each"),
    ("romlab bench native --pci 03:00.0 --plot native.png", "the three transmit paths of one NIC (root)"),
    ("romlab bench undi --pci 03:00.0 --plot undi.png -o undi.json",
     "the NIC's ROM UNDI against its reference driver, with the per-call breakdown (root)"),
]
UNDI_DESCRIPTION = """\
Send frames from one NIC (bound to its kernel driver to start with) two ways in one run, at each
frame size:
  undi       the NIC's own UNDI driver, from its option ROM (read through VFIO, or --rom), run
             in romlab's emulated PC and driving the NIC through VFIO: one UNDI_TRANSMIT per frame
             and a poll (UNDI_ISR START, PROCESS, GET_NEXT) between frames, as iPXE's undinet does
  reference  romlab's native driver, C path, one frame per call (e1000, e1000e); the kernel's
             driver through pktgen for a NIC romlab has no driver for (rtl8139: 8139cp on QEMU's)
For UNDI, each call's time is split into measured buckets (Python before emu_start, inside it,
device callbacks, BIOS services, legacy ports, Python after) and the time they leave is printed as
unaccounted; then a --trace run counts per call the register accesses and their time, the
real/protected mode switches and the instructions. The NIC is given back to its kernel driver
afterwards. Needs root and an IOMMU."""
FIRMWARE_DESCRIPTION = """\
For each NIC, one QEMU boot downloads a payload over HTTP N times with native drivers (the ROM's
own iPXE; Debian's ipxe.pxe chainloaded for a ROM that is not iPXE) and one boot with the ROM's
UNDI (Debian's undionly.kpxe chainloaded). Each boot first sizes its runs: sizing transfers grow
until one lasts long enough to extrapolate from, and every run then carries enough bytes to last
--min-seconds (kept apart in the JSON; every run is kept). romlab serves the payload and times
each transfer on the server from the payload request to a second request the client makes only
after imgfetch succeeded; a transfer counts only when every byte went out and the client
confirmed. The table gives the median Mbit/s of each path, the spread over runs
((max-min)/median) and native/UNDI. NIC igb runs Debian's e1000e ROM retargeted to 8086:10c9.
A ROM that is not iPXE needs --dhcp dnsmasq (root): dnsmasq on a tap in a network namespace hands
PXE clients the NBP and iPXE clients romlab's script.

exit status:
  0  every transfer complete
  1  some NIC or path failed (the table says which)
  2  unusable input"""


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="bench", metavar="WHAT")
    f = sub.add_parser("firmware", help="HTTP downloads under QEMU through a ROM's UNDI against native drivers, "
                                        "per NIC model",
                       description=FIRMWARE_DESCRIPTION)
    f.add_argument("--nic", default="e1000,e1000e,rtl8139,virtio-net", metavar="LIST",
                   help="comma-separated QEMU NIC models (default: e1000,e1000e,rtl8139,virtio-net; igb is "
                        "run on request: iPXE's driver gets no link on QEMU's igb, docs/firmware-bench.md)")
    f.add_argument("--rom", default="auto", metavar="auto|PATH",
                   help="the ROM: auto picks Debian's /usr/lib/ipxe/qemu/pxe-<model>.rom per NIC (for igb, "
                        "pxe-e1000e.rom retargeted to 8086:10c9 in a temporary copy)")
    f.add_argument("--size", default="16M", metavar="SIZE",
                   help="smallest payload of a run (default 16M; up to 1G)")
    f.add_argument("--min-seconds", type=float, default=2.0, metavar="S",
                   help="size each path's runs to last at least S seconds (default 2; 0: every run is --size)")
    f.add_argument("--runs", type=int, default=3, metavar="N", help="downloads per path and NIC (default 3)")
    f.add_argument("--dhcp", choices=("auto", "slirp", "dnsmasq"), default="auto",
                   help="DHCP/TFTP server (default: slirp for iPXE ROMs, dnsmasq otherwise)")
    f.add_argument("--firmware", choices=("seabios",), default="seabios",
                   help="firmware (SeaBIOS: UNDI is a legacy BIOS interface)")
    f.add_argument("--accel", choices=("tcg", "kvm"), default="tcg", help="QEMU accelerator (default tcg)")
    f.add_argument("--timeout", type=float, metavar="S",
                   help="give up on a boot after S seconds (default: from the runs' planned length; a boot "
                        "with no HTTP request for 300 s is given up on in any case)")
    f.add_argument("--json", action="store_true",
                   help="print the romlab.bench-firmware/4 JSON document (every run) instead of the table")
    f.add_argument("-o", "--output", metavar="FILE", help="also write the JSON document to FILE")
    f.add_argument("--plot", metavar="OUT.png", help="write a PNG plot (figures also in its text metadata)")
    f.add_argument("--html", metavar="OUT", help="write a one-page HTML report (table and plot)")
    f.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    n = sub.add_parser("native", help="transmit throughput of NICs: kernel driver (pktgen), romlab's C and "
                                      "Python paths",
                       description="""\
Measure NICs (each bound to its kernel driver to start with) three ways in one run:
  kernel  its kernel driver, through pktgen with burst = the batch (xmit_more: one tail write a burst)
  c       romlab's driver through VFIO, C batch path
  python  romlab's driver through VFIO, pure-Python path
Every figure is what the NIC counted as sent (GPTC; under the kernel its ethtool tx_packets), the
median of --runs runs with their spread. --vf also makes one SR-IOV VF on a PF that has the
capability, measures it the same way (the kernel's side: the VF's driver, igbvf) and removes it.
Each NIC is given back to its kernel driver afterwards. Needs root.""")
    n.add_argument("--pci", required=True, action="append", metavar="BDF",
                   help="a NIC bound to its kernel driver (e1000, e1000e, igb; a VF on igbvf); repeat for more")
    n.add_argument("--size", default="64,1514", metavar="LIST", help="frame sizes (default 64,1514)")
    n.add_argument("--batch", default="1,32,256", metavar="LIST",
                   help="batch sizes, also the kernel's pktgen burst (default 1,32,256)")
    n.add_argument("--seconds", type=float, default=2.0, help="time per run (default 2)")
    n.add_argument("--runs", type=int, default=3, metavar="N", help="runs per figure, at least 3 (default 3)")
    n.add_argument("--vf", action="store_true", help="also make one VF on each SR-IOV PF, measure it, remove it")
    n.add_argument("--kernel-dma", choices=("as-found", "identity"), default="as-found",
                   help="the IOMMU domain of the kernel driver's runs: as-found leaves each NIC's group as it is; "
                        "identity sets it for those runs (as on a host booted with iommu=pt) and back after")
    n.add_argument("--json", action="store_true",
                   help="print the romlab.bench-native/6 JSON document instead of the table")
    n.add_argument("-o", "--output", metavar="FILE", help="also write the JSON document to FILE")
    n.add_argument("--plot", metavar="OUT.png", help="write a PNG of packets/s per NIC, path, size and batch")
    n.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    _add_undi(sub)


def _add_undi(sub) -> None:
    u = sub.add_parser("undi", help="a NIC's own UNDI driver from its ROM, against its reference driver on the "
                                    "same NIC, call by call",
                       description=UNDI_DESCRIPTION)
    u.add_argument("--pci", required=True, metavar="BDF",
                   help="the NIC (e1000, e1000e or rtl8139), bound to its kernel driver")
    u.add_argument("--rom", metavar="FILE", help="run this ROM's UNDI instead of the one read from the NIC")
    u.add_argument("--force-ids", action="store_true", help="run a --rom whose PCI IDs are not the NIC's")
    u.add_argument("--size", default="64,1514", metavar="LIST", help="frame sizes (default 64,1514)")
    u.add_argument("--seconds", type=float, default=2.0, help="time per figure (default 2)")
    u.add_argument("--trace-frames", type=int, default=100, metavar="N",
                   help="frames sent with the trace on, per size (default 100)")
    u.add_argument("--json", action="store_true",
                   help="print the romlab.bench-undi/1 JSON document instead of the tables")
    u.add_argument("-o", "--output", metavar="FILE", help="also write the JSON document to FILE")
    u.add_argument("--plot", metavar="OUT.png",
                   help="write a PNG: packets/s per path and size, and UNDI's time per call by bucket")
    u.add_argument("--overwrite", action="store_true", help="replace output files that already exist")


def _run_undi(args) -> int:
    import os

    from hw.errors import UsageError
    from romlab.bench import render
    from romlab.bench import undi as bu
    from romlab.cli import note
    from romlab.cli._common import check_outputs

    try:
        sizes = [int(x) for x in args.size.split(",") if x]
    except ValueError:
        raise UsageError("--size takes comma-separated numbers, e.g. 64,1514") from None
    if not sizes or any(not 60 <= x <= 1514 for x in sizes):
        raise UsageError("frame sizes must be 60..1514")
    if not (math.isfinite(args.seconds) and 0 < args.seconds <= 3600) or not 1 <= args.trace_frames <= 100_000:
        raise UsageError("--seconds must be in (0, 3600] and --trace-frames 1..100000")
    if args.force_ids and not args.rom:
        raise UsageError("--force-ids applies to a ROM given with --rom")
    if args.rom and not os.path.isfile(args.rom):
        raise UsageError(f"--rom {args.rom}: no such file")
    check_outputs([p for p in (args.output, args.plot) if p], inputs=(args.rom,) if args.rom else (),
                  overwrite=args.overwrite)
    quiet = getattr(args, "quiet", False)
    doc = bu.run(args.pci, sizes, args.seconds, args.trace_frames, rom_path=args.rom, force_ids=args.force_ids,
                 progress=None if quiet else (lambda m: note(f"romlab bench undi: {m}")))
    written = []
    if args.plot:
        render.undi_plot(doc, args.plot)
        written.append(args.plot)
    doc["table"] = render.undi_table(doc)
    _emit(args, doc, doc["table"], written)
    return 0


def _emit(args, doc: dict, table: str, written: list[str]) -> None:
    """The document on stdout with --json, else the table; the JSON file with -o; then one
    "wrote FILE" line per file written (on stderr when stdout carries the JSON)."""
    import json
    import sys

    from romlab.cli._common import print_json, write_output

    if args.output:
        write_output(args.output, (json.dumps(doc, indent=2) + "\n").encode(), overwrite=args.overwrite)
        written.insert(0, args.output)
    if args.json:
        print_json(doc)
    else:
        print(table)
    if not getattr(args, "quiet", False):
        for path in written:
            print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)


def _run_native(args) -> int:
    from hw.errors import UsageError
    from romlab.bench import native as bn
    from romlab.bench import render
    from romlab.cli import note
    from romlab.cli._common import check_outputs
    from romlab.conventions import device_input, document, utc_now

    try:
        sizes = [int(x) for x in args.size.split(",") if x]
        batches = [int(x) for x in args.batch.split(",") if x]
    except ValueError:
        raise UsageError("--size and --batch take comma-separated numbers, e.g. 64,1514") from None
    if not sizes or any(not 60 <= x <= 1514 for x in sizes) or not batches or any(not 1 <= b <= 511 for b in batches):
        raise UsageError("frame sizes must be 60..1514 and batches 1..511")
    if not (math.isfinite(args.seconds) and 0 < args.seconds <= 3600) or not bn.MIN_RUNS <= args.runs <= 100:
        raise UsageError(f"--seconds must be in (0, 3600] and --runs {bn.MIN_RUNS}..100 (a median and its spread "
                         f"need at least {bn.MIN_RUNS})")
    check_outputs([p for p in (args.output, args.plot) if p], overwrite=args.overwrite)
    inputs = [device_input(b) for b in args.pci]  # a BDF that cannot be one is refused here, before the bench
    if len(set(inputs)) != len(inputs):
        raise UsageError("each --pci NIC once")
    from romlab.lab.qemu import terminate_on_sigterm

    terminate_on_sigterm()   # a SIGTERM unwinds like Ctrl-C: drivers and IOMMU domains go back
    started = utc_now()
    quiet = getattr(args, "quiet", False)
    results = bn.run(args.pci, sizes, batches, args.seconds, args.runs, vf=args.vf,
                     progress=None if quiet else (lambda m: note(f"romlab bench native: {m}")),
                     kernel_dma=None if args.kernel_dma == "as-found" else args.kernel_dma)
    written = []
    if args.plot:
        render.native_plot(results, args.plot)
        written.append(args.plot)
    table = render.native_table(results)
    doc = document(bn.SCHEMA, inputs=inputs, started=started, runs=args.runs, run_duration_s=args.seconds,
                   kernel_counter=f"ethtool {bn.KERNEL_TX_COUNTER}", nics=[r.as_dict() for r in results],
                   count_mismatches=bn.check_counts(results), table=table)
    _emit(args, doc, table, written)
    return 0


def run(args) -> int:
    import sys

    from hw.errors import UsageError
    from romlab.cli import note

    if getattr(args, "bench", None) == "native":
        return _run_native(args)
    if getattr(args, "bench", None) == "undi":
        return _run_undi(args)
    if getattr(args, "bench", None) != "firmware":
        raise UsageError("say what to measure: romlab bench firmware --help, romlab bench native --help, "
                         "romlab bench undi --help")
    import os
    import tempfile

    from romlab.bench import firmware as bf
    from romlab.bench import render
    from romlab.lab.http import parse_size
    from romlab.lab.qemu import terminate_on_sigterm

    terminate_on_sigterm()
    nics = [n.strip() for n in args.nic.split(",") if n.strip()]
    if not nics:
        raise UsageError("--nic: give at least one NIC model")
    if args.runs < 1:
        raise UsageError("--runs must be 1 or more")
    if not (math.isfinite(args.min_seconds) and 0 <= args.min_seconds <= 60):
        raise UsageError("--min-seconds must be in [0, 60]")
    size = parse_size(args.size)
    from romlab.cli._common import check_outputs

    # Checked before minutes of QEMU runs, not after.
    check_outputs([p for p in (args.output, args.plot, args.html) if p], overwrite=args.overwrite)

    def progress(msg: str) -> None:
        note(f"romlab bench: {msg}")

    doc = bf.run_bench(nics=nics, rom=args.rom, size=size, runs=args.runs, dhcp=args.dhcp,
                       firmware=args.firmware, accel=args.accel, timeout=args.timeout, progress=progress,
                       min_run_s=args.min_seconds)
    doc["table"] = render.firmware_table(doc)
    written = []
    png = args.plot
    tmp_png = None
    if args.html and not png:
        fd, tmp_png = tempfile.mkstemp(suffix=".png", prefix="romlab-bench-")
        os.close(fd)
        png = tmp_png
    try:
        if png:
            render.firmware_plot(doc, png)
            if args.plot:
                written.append(args.plot)
        if args.html:
            from romlab.cli._common import write_output

            write_output(args.html, render.firmware_html(doc, png).encode(), overwrite=args.overwrite)
            written.append(args.html)
    finally:
        if tmp_png:
            os.unlink(tmp_png)
    _emit(args, doc, doc["table"], written)
    failed = [(n["nic"], p, n[p]["error"] or "incomplete transfer") for n in doc["nics"] for p in bf.PATHS
              if n.get(p) and not n[p]["ok"]]
    for nic, p, err in failed:
        print(f"romlab bench: {nic} {p}: {err}", file=sys.stderr)
    slower = [n["nic"] for n in doc["nics"] if n["ratio_native_over_undi"] and n["ratio_native_over_undi"] > 1]
    if not failed:
        progress(f"UNDI slower than native on {len(slower)} of {len(doc['nics'])} NIC(s)")
    return 1 if failed else 0
