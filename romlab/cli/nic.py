"""``romlab nic``: drive a NIC from user space through VFIO with romlab's own drivers."""
from __future__ import annotations

from romlab.cli._common import check_outputs, print_json
from romlab.conventions import device_input, document

NAME = "nic"
HELP = "drive a NIC with romlab's user-space driver: info, send, recv; make SR-IOV VFs: vfs"
DESCRIPTION = """\
Drive an Intel NIC from user space through VFIO with romlab's own driver (82540EM/82545EM e1000,
82574L e1000e, 82576 igb PF and its SR-IOV VF): reset it, set up its rings and DMA buffers, then
one action. A VF takes the MAC its PF assigned (the PF drops frames from any other source MAC). The NIC must be bound to vfio-pci first
(`romlab vfio bind BDF`); romlab does not take it from its kernel driver by itself.
`vfs` makes or removes the SR-IOV virtual functions of a physical function (an 82576 on igb) and
lists them; it needs no VFIO, since the PF's own kernel driver makes them."""

EXAMPLES = [
    ("romlab nic info --pci 03:00.0", "part, MAC, link and EEPROM words of a NIC bound to vfio-pci"),
    ("romlab nic send --pci 03:00.0 --count 100000 --size 1514", "send 100000 full-size test frames"),
    ("romlab nic recv --pci 04:00.0 --count 100000 --timeout 30 --pcap rx.pcap",
     "receive and check them on another NIC, writing rx.pcap"),
    ("romlab nic vfs --pci 01:00.0 --count 2", "make two SR-IOV VFs on an 82576 PF bound to igb (root)"),
    ("romlab nic vfs --pci 01:00.0", "list a PF's VFs: address, IDs, driver, MAC"),
    ("romlab nic vfs --pci 01:00.0 --count 0", "remove them again"),
]


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="nic_cmd", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="part, MAC address, link state, EEPROM words 0x00-0x3f and their checksum",
                          description="Reset the NIC, then show its part, MAC address, link state, whether its "
                                      "DMA buffers are on\nhuge pages, and the MAC and checksum of EEPROM words "
                                      "0x00-0x3f (0xBABA when valid).")
    send = sub.add_parser("send", help="transmit numbered test frames (a seeded payload `nic recv` checks)",
                          description="Transmit --count Ethernet frames of --size bytes (without FCS) to --dst, "
                                      "--batch frames\nat a time, flat out or paced to --rate frames/s. Each "
                                      "frame carries a sequence number and a\npayload made from --seed, which "
                                      "`romlab nic recv` on the receiving NIC checks.\nExit status: 0 every frame "
                                      "left the ring, 1 the ring did not drain, 2 unusable input.")
    recv = sub.add_parser("recv", help="receive frames, check romlab's test frames, optionally write a pcap",
                          description="Receive until --count intact romlab test frames arrived (with --any: "
                                      "frames of any kind)\nor --timeout passed, waiting by polling, by interrupt "
                                      "or adaptively (--mode).\nExit status: 0 enough frames, 1 too few before "
                                      "the timeout, 2 unusable input.")
    vfs = sub.add_parser("vfs", help="make (or remove) a PF's SR-IOV virtual functions and list them",
                         description="With --count N, enable N SR-IOV virtual functions on the physical function "
                                     "--pci (0 removes\nthem; a different non-zero count removes the old ones first, "
                                     "as the kernel requires), then\nlist the VFs: address, vendor:device, driver, "
                                     "and interface and MAC where a kernel driver\nmade one. Without --count, only "
                                     "list. The PF must be bound to a driver that makes VFs\n(igb for the 82576); "
                                     "changing the count needs root.")
    vfs.add_argument("--pci", required=True, metavar="BDF", help="the physical function, bound to its kernel driver")
    vfs.add_argument("--count", type=int, metavar="N", help="enable N VFs (0 removes them); without it, only list")
    vfs.add_argument("--json", action="store_true", help="report as JSON")
    for s in (info, send, recv):
        s.add_argument("--pci", required=True, metavar="BDF", help="the NIC, bound to vfio-pci")
        s.add_argument("--json", action="store_true", help="report as JSON")
        s.add_argument("--impl", choices=("c", "python"), default="c", help="ring code: C batch path or pure Python")
    send.add_argument("--count", type=int, default=1000, help="frames to send (default 1000)")
    send.add_argument("--size", type=int, default=64, help="frame size without FCS, 60..1514 (default 64)")
    send.add_argument("--batch", type=int, default=32, help="frames per batch (default 32)")
    send.add_argument("--dst", default="ff:ff:ff:ff:ff:ff", help="destination MAC (default broadcast)")
    send.add_argument("--seed", type=int, default=1, help="payload seed (receivers check with the same seed)")
    send.add_argument("--rate", type=float, default=0, metavar="PPS", help="pace to about PPS frames/s (default: flat out)")
    recv.add_argument("--count", type=int, default=1, help="stop after this many intact romlab test frames "
                      "(with --any: frames of any kind)")
    recv.add_argument("--any", action="store_true", help="count every frame, not only romlab test frames")
    recv.add_argument("--timeout", type=float, default=10.0, help="give up after this many seconds")
    recv.add_argument("--seed", type=int, default=1, help="payload seed of romlab test frames to verify")
    recv.add_argument("--pcap", metavar="FILE", help="also write the frames to a pcap file")
    recv.add_argument("--overwrite", action="store_true", help="replace an existing --pcap file")
    recv.add_argument("--mode", choices=("adaptive", "poll", "irq"), default="adaptive",
                      help="wait for frames by polling, by interrupt (MSI or INTx through an eventfd), or "
                           "adaptively: poll while busy, sleep on the interrupt when idle (default)")


def _open(args):
    from drivers import open_nic
    from romlab.cli import detail

    detail(f"romlab nic: opening {args.pci} through VFIO: reset, then rings and DMA buffers ({args.impl} ring code)")
    nic = open_nic(args.pci, impl=args.impl)
    detail(f"romlab nic: {nic.bdf} is {nic.part.name}; RX ring {nic.RX_COUNT}, TX ring {nic.TX_COUNT} descriptors "
           f"of {nic.BUF_SIZE}-byte buffers on {'huge pages' if nic.pool.hugepages else 'normal pages'}; "
           f"link {'up' if nic.link_up else 'down'}")
    return nic


def run(args) -> int:
    from hw.errors import UsageError

    if args.nic_cmd == "send" and not (1 <= args.count and 1 <= args.batch <= 511):
        raise UsageError("--count must be positive and --batch between 1 and 511")
    return {"info": _info, "send": _send, "recv": _recv, "vfs": _vfs}[args.nic_cmd](args)


def _info(args) -> int:
    from drivers.frames import fmt_mac

    with _open(args) as nic:
        # a virtual function has no EEPROM of its own: its MAC is the one its PF assigned
        words = [nic.eeprom_word(i) for i in range(0x40)] if nic.HAS_EEPROM else None
        doc = document("romlab.nic-info/2", input=device_input(nic.bdf), part=nic.part.name, mac=fmt_mac(nic.mac),
                       link_up=nic.link_up, hugepages=nic.pool.hugepages,
                       eeprom_mac=fmt_mac(b"".join(w.to_bytes(2, "little") for w in words[:3])) if words else None,
                       eeprom_checksum=sum(words) & 0xFFFF if words else None)
    if args.json:
        print_json(doc)
    else:
        for k, v in doc.items():
            if k != "schema":
                if v is not None:
                    print(f"{k:16} {v:#06x}" if isinstance(v, int) and not isinstance(v, bool) else f"{k:16} {v}")
    return 0


def _send(args) -> int:
    import time

    from drivers import frames
    from hw.errors import UsageError
    from romlab.cli import detail, note

    try:
        dst = frames.parse_mac(args.dst)
        frames.frame(b"\0" * 6, dst, 0, 0, args.size)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with _open(args) as nic:
        src = nic.mac
        note(f"romlab nic: {nic.bdf} ({nic.part.name}) up, sending {args.count} frames")
        sent, t0 = 0, time.perf_counter()
        report = t0 + 1.0
        while sent < args.count:
            if args.rate > 0:
                ahead = sent / args.rate - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            if time.perf_counter() > report:
                note(f"romlab nic: sent {sent}")
                report += 1.0
            n = min(args.batch, args.count - sent)
            data, lens = frames.batch(src, dst, args.seed, sent, n, args.size)
            done = 0
            deadline = time.monotonic() + 5
            while done < n:
                k = nic.tx_batch(data[done * args.size:], lens[done:])
                done += k
                if not k:
                    if time.monotonic() > deadline:
                        raise UsageError(f"{nic.bdf}: the transmit ring did not drain for 5 s (link down?)")
                    time.sleep(0.0002)
            sent += n
        flushed = nic.tx_flush()
        detail(f"romlab nic: {sent} frames queued in batches of {args.batch}; the ring "
               + ("drained" if flushed else "did not drain"))
        dt = time.perf_counter() - t0
        stats = nic.stats()
    doc = document("romlab.nic-send/2", input=device_input(args.pci), sent=sent, size=args.size, elapsed_s=dt,
                   flushed=flushed, pps=sent / dt, mbit_s=sent * args.size * 8 / dt / 1e6, stats=stats)
    if args.json:
        print_json(doc)
    else:
        print(f"sent {sent} frames of {args.size} bytes in {dt:.3f} s: {doc['pps']:.0f} pkt/s, "
              f"{doc['mbit_s']:.1f} Mbit/s (hardware counted {stats['tx_good']})")
    return 0 if flushed else 1


def _vf_rows(pf) -> list[dict]:
    """Each VF of ``pf`` as the document lists it."""
    from hw.pci import PciDevice
    from romlab.conventions import pci_id

    rows = []
    for i, bdf in enumerate(pf.virtfns()):
        vf = PciDevice.open(bdf)
        rows.append({"vf": i, "bdf": str(bdf), "id": pci_id(vf.vendor_id, vf.device_id), "driver": vf.driver,
                     "interfaces": [{"name": n, "mac": mac} for n, mac in vf.net_interfaces().items()]})
    return rows


def _refuse_held_vfs(pf) -> None:
    """Removing VFs while a process has one open through VFIO would leave the kernel waiting for that
    process, uninterruptibly: refuse first, touching nothing."""
    from hw import vfio
    from hw.errors import HardwareError
    from hw.pci import PciDevice

    for bdf in pf.virtfns():
        vf = PciDevice.open(bdf)
        if vf.driver == "vfio-pci":
            holders = vfio.holders(vf)
            if holders:
                raise HardwareError(f"VF {bdf} of {pf.bdf} is open through VFIO in process {', '.join(holders)}; "
                                    "end that process before changing the VF count")


def _vfs(args) -> int:
    from hw.pci import PciDevice
    from romlab.cli import detail, note

    pf = PciDevice.open(args.pci)
    pf.require_sriov()
    before = pf.sriov_numvfs
    if args.count is not None:
        if args.count != before:
            if before:
                _refuse_held_vfs(pf)
            detail(f"romlab nic: {pf.bdf}: writing sriov_numvfs ({before} -> "
                   f"{'0 -> ' if before and args.count else ''}{args.count}) through {pf.driver or 'no driver'}")
        pf.set_sriov_numvfs(args.count)
        if args.count != before:
            note(f"romlab nic: {pf.bdf}: {before} -> {pf.sriov_numvfs} VF(s)")
    rows = _vf_rows(pf)
    doc = document("romlab.nic-vfs/1", input=device_input(pf.bdf), id=pf.ids, driver=pf.driver,
                   total_vfs=pf.sriov_totalvfs, num_vfs=pf.sriov_numvfs, vfs=rows)
    if args.json:
        print_json(doc)
        return 0
    print(f"{pf.bdf} ({pf.ids}, driver {pf.driver or 'none'}): {doc['num_vfs']} of {doc['total_vfs']} VFs enabled")
    if rows:
        print(f"{'VF':>3}  {'BDF':<13} {'ID':<9} {'DRIVER':<12} {'INTERFACE':<16} MAC")
        for r in rows:
            ifs = r["interfaces"] or [{"name": "-", "mac": None}]
            for k, i in enumerate(ifs):
                head = (f"{r['vf']:>3}  {r['bdf']:<13} {r['id']} {r['driver'] or '-':<12}" if k == 0
                        else " " * 41)
                print(f"{head} {i['name']:<16} {i['mac'] or '-'}")
    return 0


def _pcap_writer(path):
    """A libpcap file of Ethernet frames (link type 1), written by dpkt."""
    import dpkt

    return dpkt.pcap.Writer(open(path, "wb"), snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)


def _recv(args) -> int:
    import time

    from drivers import frames
    from romlab.cli import detail, note

    if args.pcap:  # an existing file is refused before the device is touched or the file truncated
        check_outputs([args.pcap], overwrite=args.overwrite)
    pcap = _pcap_writer(args.pcap) if args.pcap else None
    got, good, seqs = 0, 0, []
    link, stats, interrupts = None, {}, 0
    out = bytearray(256 * 2048)
    try:
        with _open(args) as nic:
            note(f"romlab nic: {nic.bdf} ({nic.part.name}) up, receiving")
            deadline = time.monotonic() + args.timeout
            while (got if args.any else good) < args.count and time.monotonic() < deadline:
                n, lens = nic.rx_wait_batch(out, max(0.0, deadline - time.monotonic()), args.mode)
                if not n:
                    continue
                for f in frames.split(out, lens, n):
                    got += 1
                    seq = frames.check(f, args.seed)
                    if seq is not None:
                        good += 1
                        seqs.append(seq)
                    if pcap:
                        pcap.writepkt(f, time.time())
            link, stats = nic.link_up, nic.stats()
            detail(f"romlab nic: {got} frame(s) received ({args.mode} wait), {good} intact test frame(s)")
            interrupts = getattr(nic, "interrupts", 0)
    finally:
        if pcap:
            pcap.close()
    doc = document("romlab.nic-recv/2", input=device_input(args.pci), received=got, verified=good, sequences=seqs,
                   link_up=link, stats=stats, mode=args.mode, interrupts=interrupts)
    if args.json:
        print_json(doc)
    else:
        print(f"received {got} frames, {good} intact romlab test frames (link {'up' if link else 'down'}, "
              f"hardware counted {stats.get('rx_good')}, missed {stats.get('rx_missed')}, "
              f"ring dropped {stats.get('rx_dropped')})")
    return 0 if (got if args.any else good) >= args.count else 1
