"""``romlab boot``: boot an emulated NIC carrying a ROM in QEMU and report how far it got."""
from __future__ import annotations

from romlab.cli import terminal_safe
from romlab.cli._common import print_json

NAME = "boot"
HELP = "boot a NIC carrying an option ROM in QEMU (SeaBIOS or OVMF) and report what the ROM did"
DESCRIPTION = """\
Boot QEMU (TCG unless --accel kvm) with one emulated NIC whose option ROM is --rom, read the
serial console and report the firmware and ROM banners, the boot entry, the NIC driver, DHCP,
transfers, and how the boot ended.

goals (one of):
  (default)      the firmware ran the ROM
  --nbp FILE     FILE, served by TFTP, was fetched and started
  --script FILE  the iPXE script FILE, served over HTTP, ran to its end
--expect TEXT also requires TEXT on the console.

A ROM the firmware skipped (SeaBIOS runs a legacy image only when its PCIR vendor:device match the
device) is named as such with both ID pairs. NIC models are QEMU's (e1000, e1000e, rtl8139, ...);
virtio-net means virtio-net-pci with disable-legacy=on, the ID Debian's virtio ROMs carry
(1af4:1041).

exit status:
  0  goal reached
  1  not reached (skipped, failed, hung: the last console lines are printed)
  2  unusable input (no such ROM, no QEMU, bad NIC model)"""

EXAMPLES = [
    ("romlab boot --nic e1000", "QEMU's own e1000 ROM under SeaBIOS: did it run?"),
    ("romlab boot --nic e1000e --rom /usr/lib/ipxe/qemu/efi-e1000e.rom --firmware ovmf",
     "Debian's e1000e ROM under OVMF (its EFI image)"),
    ("romlab boot --nic rtl8139 --rom new.rom --nbp /usr/lib/ipxe/undionly.kpxe",
     "the ROM fetches and starts a PXE program over TFTP"),
]


def add_arguments(p) -> None:
    p.add_argument("--nic", required=True, metavar="MODEL[,PROP=V...]",
                   help="QEMU NIC model, e.g. e1000, e1000e, rtl8139, virtio-net")
    p.add_argument("--rom", metavar="PATH|none", help="option ROM the NIC carries (default: QEMU's own ROM for "
                   "the model; none: no ROM, the firmware's own driver if it has one, such as OVMF's virtio-net)")
    p.add_argument("--firmware", choices=("seabios", "ovmf"), default="seabios",
                   help="SeaBIOS runs legacy images, OVMF EFI images (default: seabios)")
    goal = p.add_mutually_exclusive_group()
    goal.add_argument("--nbp", metavar="FILE", help="hand FILE out by DHCP/TFTP; the goal is that it runs")
    goal.add_argument("--script", metavar="FILE", help="hand this iPXE script out over HTTP; the goal is that it "
                      "runs to its end")
    p.add_argument("--expect", metavar="TEXT", help="also require TEXT on the console")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S", help="give up after S seconds (default 120)")
    p.add_argument("--accel", choices=("tcg", "kvm"), default="tcg",
                   help="QEMU accelerator (default tcg: nested KVM often cannot run ROM mode switches)")
    p.add_argument("--dhcp", choices=("auto", "slirp", "dnsmasq"), default="auto",
                   help="DHCP/TFTP: QEMU's slirp, or dnsmasq in a network namespace (root; needed to hand a "
                   "non-iPXE ROM an iPXE script). Default: slirp unless the ROM needs dnsmasq")
    p.add_argument("--json", action="store_true", help="print the romlab.boot/2 JSON document")
    p.add_argument("--console", action="store_true", help="also print the whole serial console")


EVENT_NAMES = {
    "firmware": "firmware", "rom_banner": "ROM banner", "boot_entry": "boot entry", "ipxe_start": "iPXE",
    "ipxe_init": "iPXE", "ipxe_version": "iPXE", "undi": "UNDI", "netdev": "NIC", "dhcp": "DHCP",
    "address": "address", "next_server": "next server", "filename": "boot file", "fetch": "transfer",
    "image": "image", "no_boot": "gave up", "pxe_error": "PXE error", "pxe_client_ip": "PXE",
    "pxe_start": "PXE", "pxe_station": "PXE", "pxe_nbp": "PXE NBP", "pxe_nbp_size": "PXE NBP",
    "pxe_nbp_ok": "PXE NBP", "ipxe_error": "error",
}


def run(args) -> int:
    import sys

    from romlab.lab.boot import boot
    from romlab.lab.qemu import terminate_on_sigterm

    terminate_on_sigterm()
    live = not args.json and sys.stdout.isatty()

    def show(e):
        if e.kind in EVENT_NAMES:
            print(f"  {e.t:7.2f}s  {EVENT_NAMES[e.kind]:<12} {e.line.strip()}", flush=True)

    rom = "" if args.rom == "none" else args.rom
    if not args.json:
        print(f"romlab boot: {args.nic} with {rom or ('no ROM' if rom == '' else 'QEMU default ROM')} under "
              f"{'SeaBIOS' if args.firmware == 'seabios' else 'OVMF'} ({args.accel.upper()})", flush=True)
    res = boot(nic=args.nic, rom=rom, firmware=args.firmware, nbp=args.nbp, script=args.script,
               timeout=args.timeout, accel=args.accel, dhcp=args.dhcp, expect=args.expect,
               on_event=show if live else None)
    if args.json:
        from romlab.conventions import document

        doc = document("romlab.boot/2", input=args.rom, nic=args.nic, firmware=args.firmware, accel=args.accel,
                       **res.as_dict())
        if args.console:
            doc["console"] = res.console
        print_json(doc)
    else:
        if res.device_ids:
            imgs = ", ".join(f"#{i.index} {'EFI' if i.code_type == 3 else 'x86' if i.code_type == 0 else i.code_type}"
                             f" {i.vendor:04x}:{i.device:04x}{' iPXE' if i.ipxe else ''}"
                             for i in res.images if i.vendor is not None)
            print(f"  device {res.device_ids[0]:04x}:{res.device_ids[1]:04x}" + (f"; ROM images: {imgs}" if imgs else ""))
        if not live:
            for e in res.events:
                show(e)
        if args.console:
            print("console:")
            for line in res.console.splitlines():
                print(f"  | {line}")
        if res.reached:
            print(f"result: goal reached in {res.seconds:.1f} s: {res.message}")
    if not res.reached:
        if not args.json:
            print("last console lines:", file=sys.stderr)
            for line in res.tail:
                print(terminal_safe(f"  | {line}"), file=sys.stderr)
        print(f"romlab boot: error: {res.state}: {res.message}", file=sys.stderr)
        return 1
    return 0
