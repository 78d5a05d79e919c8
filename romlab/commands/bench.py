"""``romlab bench``: measurements. ``bench firmware`` compares a NIC's UNDI path with native drivers."""
from __future__ import annotations

NAME = "bench"
HELP = "measure drivers: `bench firmware` times HTTP downloads through a ROM's UNDI against native drivers"
DESCRIPTION = """\
romlab bench firmware: for each NIC, one QEMU boot downloads the payload over HTTP N times with
native drivers (the ROM's own iPXE; Debian's ipxe.pxe chainloaded for a ROM that is not iPXE)
and one boot with the ROM's UNDI (Debian's undionly.kpxe chainloaded). romlab serves the payload
and times each transfer on the server from the payload request to a second request the client
makes only after imgfetch succeeded; a transfer counts only when every byte went out and the
client confirmed. The table gives the median Mbit/s of each path, the spread over runs
((max-min)/median) and native/UNDI. A ROM that is not iPXE needs --dhcp dnsmasq (root): dnsmasq
on a tap in a network namespace hands PXE clients the NBP and iPXE clients romlab's script.
Exit status: 0 every transfer complete, 1 some NIC or path failed (the table says which),
2 unusable input."""


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="bench", metavar="WHAT")
    f = sub.add_parser("firmware", help="UNDI against native drivers under QEMU, per NIC",
                       description=DESCRIPTION)
    f.add_argument("--nic", default="e1000,e1000e,rtl8139,virtio-net", metavar="LIST",
                   help="comma-separated QEMU NIC models (default: e1000,e1000e,rtl8139,virtio-net)")
    f.add_argument("--rom", default="auto", metavar="auto|PATH",
                   help="the ROM: auto picks Debian's /usr/lib/ipxe/qemu/pxe-<model>.rom per NIC")
    f.add_argument("--size", default="16M", metavar="SIZE", help="payload size (default 16M)")
    f.add_argument("--runs", type=int, default=3, metavar="N", help="downloads per path and NIC (default 3)")
    f.add_argument("--dhcp", choices=("auto", "slirp", "dnsmasq"), default="auto",
                   help="DHCP/TFTP server (default: slirp for iPXE ROMs, dnsmasq otherwise)")
    f.add_argument("--firmware", choices=("seabios",), default="seabios",
                   help="firmware (SeaBIOS: UNDI is a legacy BIOS interface)")
    f.add_argument("--accel", choices=("tcg", "kvm"), default="tcg", help="QEMU accelerator (default tcg)")
    f.add_argument("--timeout", type=float, metavar="S",
                   help="give up on a boot after S seconds (default: 120 s plus 1 Mbit/s for every run)")
    f.add_argument("--json", metavar="OUT", help="write the raw runs as JSON to OUT ('-' for stdout)")
    f.add_argument("--plot", metavar="OUT.png", help="write a PNG plot (figures also in its text metadata)")
    f.add_argument("--html", metavar="OUT", help="write a one-page HTML report (table and plot)")
    f.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")


def run(args) -> int:
    import sys

    from romtools.errors import RomError

    if getattr(args, "bench", None) != "firmware":
        raise RomError("say what to measure: romlab bench firmware --help")
    import json
    import os
    import tempfile

    from romlab import bench_firmware as bf
    from romlab.labhttp import parse_size
    from romlab.qemu import terminate_on_sigterm

    terminate_on_sigterm()
    nics = [n.strip() for n in args.nic.split(",") if n.strip()]
    if not nics:
        raise RomError("--nic: give at least one NIC model")
    if args.runs < 1:
        raise RomError("--runs must be 1 or more")
    size = parse_size(args.size)

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"romlab bench: {msg}", file=sys.stderr, flush=True)

    doc = bf.run_bench(nics=nics, rom=args.rom, size=size, runs=args.runs, dhcp=args.dhcp,
                       firmware=args.firmware, accel=args.accel, timeout=args.timeout, progress=progress)
    doc["table"] = bf.table(doc)
    if args.json == "-":
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(doc["table"])
        if args.json:
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=2)
                f.write("\n")
    png = args.plot
    tmp_png = None
    if args.html and not png:
        fd, tmp_png = tempfile.mkstemp(suffix=".png", prefix="romlab-bench-")
        os.close(fd)
        png = tmp_png
    try:
        if png:
            bf.plot(doc, png)
        if args.html:
            with open(args.html, "w") as f:
                f.write(bf.html(doc, png))
    finally:
        if tmp_png:
            os.unlink(tmp_png)
    failed = [(n["nic"], p, n[p]["error"] or "incomplete transfer") for n in doc["nics"] for p in bf.PATHS
              if n.get(p) and not n[p]["ok"]]
    for nic, p, err in failed:
        print(f"romlab bench: {nic} {p}: {err}", file=sys.stderr)
    slower = [n["nic"] for n in doc["nics"] if n["ratio_native_over_undi"] and n["ratio_native_over_undi"] > 1]
    if not args.quiet and not failed:
        progress(f"UNDI slower than native on {len(slower)} of {len(doc['nics'])} NIC(s)")
    return 1 if failed else 0
