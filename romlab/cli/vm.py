"""``romlab vm``: boot a QEMU guest with emulated NICs and run one command in it."""
from __future__ import annotations

import argparse

NAME = "vm"
HELP = "boot a QEMU guest with emulated NICs behind a vIOMMU and run a command in it"
DESCRIPTION = """\
Boot q35 with an Intel vIOMMU and the given emulated NICs on Debian's kernel and the host's root
file system, run COMMAND as root in the current directory with the host's PATH, print its output
and exit with its status.

--nic MODEL[,KEY=VALUE...], once per NIC, each in a PCIe slot of its own. MODEL is a QEMU NIC
model (e1000, e1000e, rtl8139, igb, ...; virtio-net means virtio-net-pci with disable-legacy=on).
Keys:
  romfile=PATH   the option ROM its ROM BAR holds (romfile= with no PATH: no ROM BAR)
  romsize=BYTES  the ROM BAR's size, a power of two at least as large as the ROM (QEMU's property)
  rombar=0|1     0 hides the ROM BAR from the guest (QEMU's property; default 1)
  mac=MAC        its MAC address, e.g. 52:54:00:12:34:56
  capture=PCAP   write its traffic, both ways, to a pcap file
  link=NAME      join the NICs with the same NAME on one virtual hub (letters and digits)
  KEY=VALUE      any other property of the QEMU device (`qemu-system-x86_64 -device MODEL,help`)"""

EXAMPLES = [
    ("romlab vm --nic e1000 -- romlab list", "a guest with one e1000: list its PCI devices"),
    ("romlab vm --nic e1000,romfile=new.rom,romsize=262144 -- romlab list --with-rom",
     "the NIC carries new.rom in a 256 KiB ROM BAR"),
    ("romlab vm --nic e1000e,link=lab --nic e1000e,link=lab,capture=lab.pcap -- romlab list",
     "two NICs on one virtual hub, the second one's traffic written to lab.pcap"),
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nic", action="append", default=[], metavar="MODEL[,KEY=VALUE...]",
                   help="an emulated NIC (repeat for more); the keys are listed above")
    p.add_argument("--memory", default="1G", metavar="SIZE", help="guest memory (default 1G)")
    p.add_argument("--cpus", type=int, default=None, metavar="N",
                   help="guest CPUs (default 1: under TCG a second vCPU now and then stalls the guest for good)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="kill the guest after this many seconds (default 600)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="auto uses KVM only where a probe shows it boots Linux, else TCG")
    p.add_argument("--share", action="append", default=[], metavar="DIR",
                   help="a host directory the guest may write to, at the same path (repeatable)")
    p.add_argument("guest_command", nargs=argparse.REMAINDER, metavar="COMMAND", help="-- COMMAND [ARGS...]")


def run(args) -> int:
    from romlab.lab import vm
    from romlab.lab.qemu import NicSpec

    command = list(args.guest_command)
    if command and command[0] == "--":
        command = command[1:]
    nics = [NicSpec.parse(s) for s in args.nic]
    if args.cpus is not None and not 1 <= args.cpus <= 64:
        from hw.errors import UsageError

        raise UsageError(f"--cpus {args.cpus}: give 1 to 64 guest CPUs")
    cpus = vm.DEFAULT_CPUS if args.cpus is None else args.cpus
    result = vm.run(command, nics, memory=args.memory, cpus=cpus, timeout=args.timeout,
                    accel=args.accel, shares=args.share, verbose=args.verbose and not args.quiet)
    if args.verbose and not args.quiet:
        import sys

        print(f"romlab vm: guest ran {result.seconds:.1f} s under {result.accel.upper()}, "
              f"exit status {result.returncode}", file=sys.stderr)
    return result.returncode
