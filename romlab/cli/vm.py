"""``romlab vm``: boot a QEMU guest with emulated NICs and run one command in it."""
from __future__ import annotations

import argparse

NAME = "vm"
HELP = "boot a QEMU guest with emulated NICs behind a vIOMMU and run a command in it"
DESCRIPTION = (
    "Boot q35 with an Intel vIOMMU and the given emulated NICs on Debian's kernel and the host's "
    "root file system, run COMMAND as root in the current directory with the host's PATH, print "
    "its output and exit with its status. Example: romlab vm --nic e1000,mac=52:54:00:12:34:56 "
    "-- romlab list")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nic", action="append", default=[], metavar="MODEL[,romfile=PATH][,mac=MAC][,capture=PCAP][,link=NAME]",
                   help="an emulated NIC, each in a PCIe slot of its own (repeat for more); capture= writes "
                        "its traffic to a pcap file")
    p.add_argument("--memory", default="1G", help="guest memory (default 1G)")
    p.add_argument("--cpus", type=int, default=2, help="guest CPUs (default 2)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="kill the guest after this many seconds (default 600)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="auto uses KVM only where a probe shows it boots Linux, else TCG")
    p.add_argument("--share", action="append", default=[], metavar="DIR",
                   help="a host directory the guest may write to, at the same path (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true", help="say how the guest is started")
    p.add_argument("guest_command", nargs=argparse.REMAINDER, metavar="COMMAND", help="-- COMMAND [ARGS...]")


def run(args) -> int:
    from romlab.lab import vm
    from romlab.lab.qemu import NicSpec

    command = list(args.guest_command)
    if command and command[0] == "--":
        command = command[1:]
    nics = [NicSpec.parse(s) for s in args.nic]
    result = vm.run(command, nics, memory=args.memory, cpus=args.cpus, timeout=args.timeout,
                    accel=args.accel, shares=args.share, verbose=args.verbose)
    if args.verbose:
        import sys

        print(f"romlab vm: guest ran {result.seconds:.1f} s under {result.accel.upper()}, "
              f"exit status {result.returncode}", file=sys.stderr)
    return result.returncode
