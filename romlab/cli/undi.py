"""``romlab undi``: run a NIC's own UNDI driver, from its option ROM, in user space against the NIC."""
from __future__ import annotations

import math

from romlab.cli._common import print_json

NAME = "undi"
MAX_WATCHDOG = 3600.0  # an hour: past that a ROM step is hung, not slow
MAX_TIMEOUT = 86400.0
HELP = "run a NIC's UNDI driver from its option ROM against the NIC itself: info, send, recv"
DESCRIPTION = """\
Run the UNDI driver of a NIC's option ROM in an emulated real-mode PC (unicorn) against the NIC
itself through VFIO: the ROM is read from the NIC's ROM BAR (or --rom FILE), its init and UNDI
loader run as a BIOS and a PXE client would call them, and romlab speaks the PXE API to it as
iPXE's undinet does. The ROM's memory accesses reach the NIC's registers directly, its DMA reaches
the emulated RAM through the IOMMU.
The NIC is taken from its kernel driver for the run (or used on vfio-pci if it is there already),
then reset and given back. A ROM that loops (--watchdog), faults, or touches memory or ports outside
the emulated PC and its NIC is stopped with one line naming the address and the UNDI call.
send and recv speak the same seeded test frames as `romlab nic send|recv`."""

EXAMPLES = [
    ("romlab undi info --pci 03:00.0", "the !PXE and PXENV+ structures, GET_INFORMATION, GET_NIC_TYPE, GET_IFACE_INFO"),
    ("romlab undi send --pci 03:00.0 --count 100 --seed 7",
     "100 test frames through the ROM's UNDI_TRANSMIT (`romlab nic recv --seed 7` checks them)"),
    ("romlab undi recv --pci 03:00.0 --count 100 --timeout 30 --json",
     "receive and check test frames through UNDI_ISR, with the NIC's missed-packet counter"),
    ("romlab undi info --pci 03:00.0 --rom /usr/lib/ipxe/qemu/pxe-e1000.rom",
     "run a ROM file (here Debian's ipxe-qemu e1000 ROM) instead of the NIC's own ROM"),
]


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="undi_cmd", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="the PXE structures and UNDI information as the running ROM fills them in",
                          description="Bring the ROM's UNDI up (START_UNDI, STARTUP, INITIALIZE) and show the "
                                      "!PXE and PXENV+\nstructures its loader returned, GET_INFORMATION, "
                                      "GET_NIC_TYPE and GET_IFACE_INFO.")
    send = sub.add_parser("send", help="transmit numbered test frames through UNDI_TRANSMIT",
                          description="Open the ROM's UNDI and transmit --count test frames of --size bytes to "
                                      "--dst, one\nUNDI_TRANSMIT each, paced to --rate frames/s if given. The "
                                      "payload is made from --seed,\nwhich `romlab nic recv` or `romlab undi "
                                      "recv` on the receiving NIC checks.")
    recv = sub.add_parser("recv", help="receive frames through UNDI_ISR and check romlab's test frames",
                          description="Open the ROM's UNDI and poll UNDI_ISR (as undinet does) until --count "
                                      "intact test frames\narrived or --timeout passed; report the receive rate "
                                      "and the NIC's missed-packet counter.\nExit status: 0 enough frames, 1 too "
                                      "few before the timeout, 2 an error.")
    for s in (info, send, recv):
        s.add_argument("--pci", required=True, metavar="BDF", help="the NIC (root: it is taken from its driver "
                                                                   "for the run)")
        s.add_argument("--rom", metavar="FILE", help="run this ROM instead of the one in the NIC's ROM BAR")
        s.add_argument("--force-ids", action="store_true",
                       help="run a --rom whose PCI IDs do not name the NIC")
        s.add_argument("--trace", action="store_true",
                       help="every BAR access through Python, counted (slower)")
        s.add_argument("--watchdog", type=float, default=60.0, metavar="S",
                       help="stop a ROM step or UNDI call that runs longer than S seconds (default 60)")
        s.add_argument("--json", action="store_true", help="report as JSON")
    send.add_argument("--count", type=int, default=100, help="frames to send (default 100)")
    send.add_argument("--size", type=int, default=64, help="frame size without FCS, 60..1514 (default 64)")
    send.add_argument("--dst", default="ff:ff:ff:ff:ff:ff", help="destination MAC (default broadcast)")
    send.add_argument("--seed", type=int, default=1, help="payload seed (receivers check with the same seed)")
    send.add_argument("--rate", type=float, default=0, metavar="PPS",
                      help="pace to about PPS frames/s (default: flat out)")
    recv.add_argument("--count", type=int, default=1, help="stop after this many intact romlab test frames")
    recv.add_argument("--timeout", type=float, default=10.0, help="give up after this many seconds")
    recv.add_argument("--seed", type=int, default=1, help="payload seed of romlab test frames to verify")


def _plain(obj):
    """A parsed PXE structure as JSON values: bytes as hex, construct's bookkeeping left out."""
    from construct import Container, ListContainer

    if isinstance(obj, Container):
        return {k: _plain(v) for k, v in obj.items() if not k.startswith("_") and k != "exit"}
    if isinstance(obj, (list, ListContainer)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (bytes, bytearray)):
        return obj.hex()
    return obj


def run(args) -> int:
    from drivers import frames
    from romtools.walker import read_input
    from hw.errors import UsageError

    # isfinite first: NaN and inf pass a "<= 0" test and would fail only after the NIC was taken
    if not (math.isfinite(args.watchdog) and 0 < args.watchdog <= MAX_WATCHDOG):
        raise UsageError(f"--watchdog must be a number of seconds in (0, {MAX_WATCHDOG}]")
    if args.undi_cmd == "send":
        if args.count < 1:
            raise UsageError("--count must be positive")
        try:
            args.dst_mac = frames.parse_mac(args.dst)
            frames.frame(b"\0" * 6, args.dst_mac, 0, 0, args.size)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.undi_cmd == "recv" and (args.count < 1 or
                                    not (math.isfinite(args.timeout) and 0 < args.timeout <= MAX_TIMEOUT)):
        raise UsageError(f"--count must be positive and --timeout a number of seconds in (0, {MAX_TIMEOUT}]")
    rom = read_input(args.rom) if args.rom else None   # bounded, a FIFO refused, one-line errors
    return {"info": _info, "send": _send, "recv": _recv}[args.undi_cmd](args, rom)


def _session(args, rom):
    from drivers.undi.vfio_device import undi_on_device
    from romlab.cli import detail

    detail(f"romlab undi: {args.pci}: to vfio-pci, ROM from {args.rom or 'its ROM BAR'}, init, UNDI loader, "
           f"START_UNDI ... INITIALIZE" + (" (every BAR access traced)" if args.trace else ""))
    return undi_on_device(args.pci, rom, force_ids=args.force_ids, direct=not args.trace, watchdog=args.watchdog)


def _ids(vendor: int, device: int) -> str:
    return f"{vendor:04x}:{device:04x}"


def _common(args, run) -> dict:
    """What every action reports about the run (docs/conventions.md's spellings): the device, the
    ROM (``rom`` null: the one in the device's ROM BAR), the step timings, each UNDI call's count
    and total time."""
    t = run.machine.timings
    doc = {"input": f"pci:{run.nic.v.pci.bdf}", "rom": args.rom, "rom_source": run.rom_source,
           "id": _ids(*run.nic.ids),
           "rom_id": _ids(run.machine.image.pcir.vendor_id, run.machine.image.pcir.device_id),
           "mac": run.client.mac.hex(":"), "init_s": t.init, "loader_s": t.loader,
           "calls": {k: {"count": len(v), "total_s": sum(v)} for k, v in t.calls.items()},
           "notes": run.notes}  # the list the run fills in as it ends: the reset after the run is in it by print time
    if args.trace:
        doc["bar_accesses"] = run.nic.accesses
    return doc


def _nic_type(out, domain: int) -> dict:
    """GET_NIC_TYPE's PCI arm with its IDs spelled as lspci spells them and its bus:dev.fn word as
    a BDF with the device's domain (docs/conventions.md: the word carries no domain)."""
    from hw.pci import Bdf

    n = out.info
    bdf = Bdf(domain, n.bus_dev_func >> 8, (n.bus_dev_func >> 3) & 0x1F, n.bus_dev_func & 7)
    return {"status": out.status, "nic_type": out.nic_type, "id": _ids(n.vendor_id, n.dev_id),
            "class": f"{n.base_class:02x}{n.sub_class:02x}{n.prog_intf:02x}", "rev": n.rev,
            "bus_dev_func": str(bdf), "subsystem": _ids(n.sub_vendor_id, n.sub_device_id)}


def _notes(run) -> None:
    """The run's notes (the device's resets) on stderr, as the text output's last lines."""
    from romlab.cli import note

    for n in run.notes:
        note(f"romlab undi: {n}")


def _trace_line(doc) -> None:
    if "bar_accesses" in doc:
        print(f"--trace: {doc['bar_accesses']} BAR accesses went through Python")


def _close(run) -> None:
    """undinet's close and remove."""
    run.client.close()
    run.client.remove()


def _info(args, rom) -> int:
    from drivers.frames import fmt_mac

    with _session(args, rom) as run:
        c = run.client
        nic_type, iface = c.get_nic_type(), c.get_iface_info()
        doc = {"schema": "romlab.undi-info/2", **_common(args, run),
               "pxe": _plain(run.machine.pxe), "pxenv": _plain(run.machine.pxenv),
               "get_information": _plain(c.info), "get_nic_type": _nic_type(nic_type, run.nic.v.pci.bdf.domain),
               "get_iface_info": _plain(iface),
               "console": bytes(run.machine.bios.console).decode("latin-1"),
               "console_dropped_bytes": run.machine.bios.console_dropped}
        c.remove()
    if args.json:
        print_json(doc)
        return 0
    m = run.machine
    pxe, pxenv, info = m.pxe, m.pxenv, c.info
    ep = pxe.entry_point_sp
    print(f"device           {doc['input'][4:]} ({doc['id']}), ROM from {args.rom or 'its ROM BAR'} "
          f"(PCIR {doc['rom_id']})")
    print(f"!PXE             rev {pxe.struct_rev}, entry {ep.segment:04x}:{ep.offset:04x}, "
          f"{pxe.seg_desc_cnt} segment descriptors")
    for name in ("stack", "undi_data", "undi_code", "undi_code_write", "bc_data", "bc_code", "bc_code_write"):
        d = pxe[name]
        print(f"  {name:15}{d.segment_address:04x} phys {d.physical_address:#07x} size {d.seg_size:#x}")
    print(f"PXENV+           version {pxenv.version >> 8}.{pxenv.version & 0xFF:02d}, RM entry "
          f"{pxenv.rm_entry.segment:04x}:{pxenv.rm_entry.offset:04x}, UNDI code {pxenv.undi_code_seg:04x} "
          f"({pxenv.undi_code_size:#x}), data {pxenv.undi_data_seg:04x} ({pxenv.undi_data_size:#x})")
    mac = fmt_mac(bytes(info.current_node_address[:info.hw_addr_len]))
    perm = fmt_mac(bytes(info.perm_node_address[:info.hw_addr_len]))
    print(f"GET_INFORMATION  MAC {mac} (permanent {perm}), IRQ {info.int_number}, I/O {info.base_io:#x}, "
          f"MTU {info.max_tran_unit}, RX/TX buffers {info.rx_buf_ct}/{info.tx_buf_ct}")
    n = nic_type.info
    print(f"GET_NIC_TYPE     type {nic_type.nic_type}, {n.vendor_id:04x}:{n.dev_id:04x} class "
          f"{n.base_class:02x}{n.sub_class:02x}{n.prog_intf:02x} rev {n.rev:02x}, "
          f"{doc['get_nic_type']['bus_dev_func']}, "
          f"subsystem {n.sub_vendor_id:04x}:{n.sub_device_id:04x}")
    name = bytes(iface.iface_type).split(b"\0", 1)[0].decode("latin-1")
    print(f"GET_IFACE_INFO   {name}, link {iface.link_speed} bit/s, service flags {iface.service_flags:#x}")
    print(f"timings          init {m.timings.init * 1000:.0f} ms, loader {m.timings.loader:.2f} s")
    _trace_line(doc)
    _notes(run)
    return 0


def _send(args, rom) -> int:
    import time

    from drivers import frames
    from romlab.cli import note

    with _session(args, rom) as run:
        c = run.client
        c.open()
        note(f"romlab undi: {args.pci} up through its ROM's UNDI ({c.mac.hex(':')}), sending {args.count} frames")
        t0 = time.perf_counter()
        for seq in range(args.count):
            if args.rate > 0:
                ahead = seq / args.rate - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            c.transmit(frames.frame(c.mac, args.dst_mac, args.seed, seq, args.size))
            c.poll()  # undinet's poll between transmits: the ROM reaps its TX ring here
        dt = time.perf_counter() - t0
        stats = _plain(c.get_statistics())
        doc = {"schema": "romlab.undi-send/2", **_common(args, run), "sent": args.count, "frame_bytes": args.size,
               "seed": args.seed, "sending_s": dt, "pps": args.count / dt, "statistics": stats}
        _close(run)
    if args.json:
        print_json(doc)
    else:
        _trace_line(doc)
        print(f"sent {args.count} frames of {args.size} bytes through UNDI_TRANSMIT in {dt:.3f} s: "
              f"{doc['pps']:.0f} pkt/s (the ROM counted {stats['xmt_good_frames']} good)")
        _notes(run)
    return 0


def _recv(args, rom) -> int:
    import time

    from drivers import frames
    from romlab.cli import note

    got, good, seqs, first, last = 0, 0, [], None, None
    distinct = set()  # a frame the network delivered twice is verified once
    with _session(args, rom) as run:
        c = run.client
        c.open()
        run.nic.missed_packets()  # the NIC's missed-packet count starts here
        note(f"romlab undi: {args.pci} up through its ROM's UNDI ({c.mac.hex(':')}), receiving")
        deadline = time.monotonic() + args.timeout
        while good < args.count and time.monotonic() < deadline:
            for f in c.poll():
                got += 1
                seq = frames.check(f, args.seed)
                if seq is not None:  # the rate is of test frames, first to last
                    seqs.append(seq)
                    if seq in distinct:
                        continue
                    distinct.add(seq)
                    good += 1
                    last = time.perf_counter()
                    first = first if first is not None else last
        missed = run.nic.missed_packets()
        stats = _plain(c.get_statistics())
        doc = {"schema": "romlab.undi-recv/2", **_common(args, run), "received": got, "verified": good,
               "duplicates": len(seqs) - good, "sequences": seqs, "seed": args.seed,
               "pps": (good - 1) / (last - first) if good > 1 and last > first else None,
               "missed": missed, "statistics": stats,
               "rx_errors": c.rx_errors}
        _close(run)
    if args.json:
        print_json(doc)
    else:
        _trace_line(doc)
        rate = f", {doc['pps']:.0f} frames/s while frames came" if doc["pps"] else ""
        print(f"received {got} frames, {good} intact romlab test frames{rate} (the NIC missed "
              f"{'?' if missed is None else missed}, the ROM counted {stats['rcv_good_frames']} good)")
        _notes(run)
    return 0 if good >= args.count else 1
