"""``romlab lab fleet up|down|fault``: a fleet of lab guests to rehearse Ansible roll-outs on."""
from __future__ import annotations

NAME = "lab"
HELP = "start and stop a lab fleet: guests with NICs, flash chips and SSH, and their Ansible inventory"
DESCRIPTION = """\
fleet up      boot --hosts N `romlab vm` guests at once, each with an e1000 whose ROM BAR and flash
              chip hold --rom, a serprog programmer of its own on the host, and Debian's sshd on a
              management NIC (SSH forwarded from 127.0.0.1); waits for every sshd, writes
              DIR/inventory.yml for ansible/ (see docs/fleet.md) and returns, the fleet running
fleet down    stop the fleet in DIR
fleet fault   restart host --host I's programmer with --fault KIND:VALUE (as serprog-emu's; none clears)
fleet status  print the fleet's state (hosts, ports, boot times) as JSON

The chips are DIR/hostI/chip.bin on this machine; guests reach them as serprog:tcp=10.0.2.2:PORT."""

EXAMPLES = [
    ("romlab lab fleet up --hosts 3 --dir lab --rom /usr/lib/ipxe/qemu/pxe-e1000.rom",
     "three hosts; then: ansible-playbook -i lab/inventory.yml ansible/inventory.yml"),
    ("romlab lab fleet fault --dir lab --host 2 --fault lie:0.3", "host 2's programmer loses 30% of its writes"),
    ("romlab lab fleet down --dir lab", "stop the fleet"),
]

ACTIONS = ("up", "down", "fault", "status")


def add_arguments(p):
    p.add_argument("what", choices=("fleet",), help="what to run (fleet)")
    p.add_argument("action", choices=ACTIONS, help="up, down, fault or status")
    p.add_argument("--dir", default="lab-fleet", metavar="DIR",
                   help="the lab's directory: keys, chips, logs, inventory.yml (default lab-fleet)")
    p.add_argument("--hosts", type=int, default=3, metavar="N", help="up: how many hosts (default 3)")
    p.add_argument("--rom", default="/usr/lib/ipxe/qemu/pxe-e1000.rom", metavar="ROM",
                   help="up: the image every NIC starts with (default Debian's pxe-e1000.rom)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto", help="up: as for romlab vm")
    p.add_argument("--timeout", type=float, default=900.0, metavar="S",
                   help="up: give up when the sshds have not all answered after S seconds (default 900)")
    p.add_argument("--host", type=int, metavar="I", help="fault: which host (1..N)")
    p.add_argument("--fault", action="append", default=[], metavar="KIND:VALUE",
                   help="fault: flip:RATE, drop:RATE, lie:RATE, disconnect:BYTES, or none (repeatable)")


def run(args) -> int:
    import json

    from hw.errors import UsageError
    from romlab.cli._common import print_json
    from romlab.lab import fleet

    if args.action == "up":
        st = fleet.up(args.dir, args.hosts, args.rom, timeout=args.timeout, accel=args.accel)
        for h in st["hosts"]:
            print(f"{h['name']}: ssh -p {h['ssh_port']} root@127.0.0.1, programmer serprog:tcp=10.0.2.2:"
                  f"{h['prog_port']} (chip {h['chip']}), up after {h.get('boot_seconds')} s")
        print(f"inventory: {st['lab']}/inventory.yml; all {len(st['hosts'])} up after {st['boot_seconds']} s")
    elif args.action == "down":
        st = fleet.down(args.dir)
        print(f"stopped the fleet in {st['lab']}")
    elif args.action == "fault":
        if args.host is None or not args.fault:
            raise UsageError("fault needs --host I and at least one --fault KIND:VALUE (none clears)")
        fleet.fault(args.dir, args.host, args.fault)
        print(f"host {args.host}'s programmer restarted with faults: {', '.join(args.fault)}")
    else:
        from pathlib import Path

        print_json(json.loads(json.dumps(fleet.read_state(Path(args.dir).resolve()))))
    return 0
