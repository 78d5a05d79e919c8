"""``romlab serprog-emu``: a virtual serprog programmer holding a chip image."""
from __future__ import annotations

NAME = "serprog-emu"
HELP = "run a virtual serprog programmer with a simulated SPI NOR chip"
DESCRIPTION = """\
Serve the serprog protocol over TCP or a pseudo-terminal, with a simulated SPI NOR chip whose
contents live in --image (changed in place). Rehearse a flash with no hardware, with romlab
(--programmer serprog:tcp=127.0.0.1:PORT) or flashrom (-p serprog:ip=127.0.0.1:PORT).
Without --chip the chip is a common part of the image's size that flashrom knows
(512 KiB: Winbond W25X40).

faults (--fault KIND:VALUE, repeatable; rates per byte on the bus, reproducible with --seed):
  flip:RATE         bit flips
  drop:RATE         lost bytes
  lie:RATE          program/erase accepted, not done
  disconnect:BYTES  hang up once after that many bytes"""

EXAMPLES = [
    ("romlab serprog-emu --image chip.bin --listen tcp:4242", "a chip of chip.bin's size on TCP port 4242"),
    ("romlab serprog-emu --image chip.bin --fault flip:1e-6 --seed 7", "the same with reproducible bit flips"),
]


def add_arguments(p):
    p.add_argument("--image", required=True, metavar="FILE", help="chip contents (the chip's size)")
    p.add_argument("--chip", metavar="NAME", help="chip to emulate (e.g. W25X40, MX25L4005, SST25VF040B)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--listen", metavar="tcp:[HOST:]PORT", default="tcp:0",
                       help="TCP address (default tcp:0 = a free port on 127.0.0.1)")
    where.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal")
    p.add_argument("--fault", action="append", default=[], metavar="KIND:VALUE",
                   help="inject faults: flip:RATE, drop:RATE, lie:RATE, disconnect:BYTES (repeatable)")
    p.add_argument("--seed", type=int, default=1, help="seed for the faults (default 1)")
    p.add_argument("--timing", default="fast", choices=("fast", "datasheet", "none"),
                   help="busy times: fast (default, ~100x quicker than a datasheet), datasheet, none")
    p.add_argument("--status", type=lambda s: int(s, 0), metavar="SR",
                   help="initial status register (e.g. 0x1c to start block-protected)")
    p.add_argument("--stats", metavar="FILE", help="write counters as JSON after each host session")
    p.add_argument("--absent", action="store_true",
                   help="programmer with no chip attached (every read is 0xFF), to rehearse a bad clip")
    p.add_argument("--once", action="store_true", help="exit after the first TCP session")


def run(args) -> int:
    import signal
    import sys

    from hw.errors import UsageError
    from romtools.flash.sim.serprog_server import Emulator, parse_faults

    faults = parse_faults(args.fault, args.seed)
    emu = Emulator(args.image, args.chip, timing=args.timing, faults=faults, status=args.status,
                   stats_path=args.stats, absent=args.absent)

    def ready(msg):
        print(msg, flush=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        if args.pty:
            emu.serve_pty(ready)
        else:
            spec = args.listen
            if not spec.startswith("tcp:"):
                raise UsageError(f"--listen wants tcp:[HOST:]PORT, got {spec!r}")
            host, _, port = spec[4:].rpartition(":")
            if not port.isdigit():
                raise UsageError(f"--listen wants tcp:[HOST:]PORT, got {spec!r}")
            emu.serve_tcp(host or "127.0.0.1", int(port), ready, once=args.once)
    except KeyboardInterrupt:
        pass
    finally:
        emu.map.flush()
        emu.write_stats()
        sys.stdout.flush()
    return 0
