#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: romlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: romlab_restore
short_description: Put a controller-held backup of a NIC's flash back on its chip
version_added: "0.1.0"
description:
  - Copies a backup that M(romlab.fleet.romlab_flash) fetched to the controller back to the host
    and writes it with C(romlab restore), which checks the backup against its record and the chip
    it finds (same JEDEC ID and size), saves what the chip holds now, writes only the blocks that
    differ and verifies.
  - The action plugin refuses a backup taken from another host or another NIC (its C(.fleet.json)
    record says whose it is) unless O(force) is set; romlab refuses one of another chip model.
  - Without O(backup) the backup of the NIC under O(backup_dir) that is used is the oldest one taken
    since the last write M(romlab.fleet.romlab_flash) completed (what the chip held before a write
    that failed), else that completed write's own backup, else the oldest.
author:
  - romlab developers (@romlab)
options:
  romlab:
    description: The romlab program on the managed host.
    type: path
    default: /opt/romlab/bin/romlab
  bdf:
    description: The NIC whose flash is restored (C(0000:03:00.0) or C(03:00.0)).
    type: str
    required: true
  backup:
    description:
      - The backup (C(.bin), its C(.json) record beside it) on the controller.
      - The action plugin copies it to the host and passes the host path on to the module.
    type: path
  backup_dir:
    description: The controller directory romlab_flash fetched backups into; searched when O(backup) is not given.
    type: path
  remote_backup_dir:
    description: Directory on the managed host where romlab saves what the chip held before the restore.
    type: path
    default: /var/lib/romlab/backups
  force:
    description: Restore a backup whose record names another host or NIC (the chip model is checked regardless).
    type: bool
    default: false
  management_nics:
    description:
      - PCI addresses of NICs never to restore over this connection, in addition to the one carrying
        the SSH connection (and the other functions of its card).
      - Over SSH, when the NIC carrying the connection cannot be found, the module refuses unless this is given.
    type: list
    elements: str
    default: []
  ssh_connection:
    description: Set by the action plugin - E(SSH_CONNECTION) as the login shell on the host saw it.
    type: str
extends_documentation_fragment:
  - romlab.fleet.targets
attributes:
  check_mode:
    support: partial
    description: Reports what would be erased and programmed (romlab restore --dry-run); writes nothing.
    details:
      - A check never unbinds a driver. An in-system NIC whose driver keeps romlab from its flash is
        reported with RV(would_change=unknown) and a warning.
  diff_mode:
    support: none
    description: The chip's contents are not shown; the result says how many bytes are erased and programmed.
seealso:
  - module: romlab.fleet.romlab_flash
"""

EXAMPLES = r"""
- name: Put one NIC's backup back (the one taken before its last failed or completed write)
  romlab.fleet.romlab_restore:
    bdf: "0000:01:00.0"
    backup_dir: "{{ playbook_dir }}/backups"

- name: A given backup, through the programmer on that NIC's flash
  romlab.fleet.romlab_restore:
    bdf: "0000:01:00.0"
    backup: backups/host2/0000-01-00.0/20260101T120000Z-ef3011-1a2b3c4d.bin
    targets:
      - bdf: "0000:01:00.0"
        programmer: serprog:tcp=10.0.2.2:4242
"""

RETURN = r"""
bdf:
  description: The NIC restored.
  returned: always
  type: str
  sample: "0000:01:00.0"
target:
  description: How its flash was reached.
  returned: always
  type: str
backup:
  description: The backup written (its path on the controller).
  returned: always
  type: str
erase_bytes:
  description: Bytes erased (or, in check mode, that would be).
  returned: always
  type: int
program_bytes:
  description: Bytes programmed (or, in check mode, that would be).
  returned: always
  type: int
previous_contents:
  description: Where romlab saved what the chip held before (on the host).
  returned: when changed
  type: str
would_change:
  description: V(unknown) in check mode when the NIC's flash cannot be read without unbinding its driver.
  returned: when unknown
  type: str
reason:
  description: Why it is unknown.
  returned: when unknown
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.romlab.fleet.plugins.module_utils.fleet import (
    TARGETS_ARG, ManagementUnknown, RomlabFailed, list_nics, management_bdfs, normalize_bdf, run_romlab,
    target_of)


def main():
    module = AnsibleModule(argument_spec=dict(
        romlab=dict(type="path", default="/opt/romlab/bin/romlab"),
        bdf=dict(type="str", required=True),
        backup=dict(type="path"),
        backup_dir=dict(type="path"),
        targets=TARGETS_ARG,
        remote_backup_dir=dict(type="path", default="/var/lib/romlab/backups"),
        force=dict(type="bool", default=False),
        management_nics=dict(type="list", elements="str", default=[]),
        ssh_connection=dict(type="str"),
    ), required_one_of=[("backup", "backup_dir")], supports_check_mode=True)
    p = module.params
    if not p["backup"]:
        module.fail_json(msg="backup is not set: run romlab_restore through its action plugin, which copies "
                             "the controller's backup to the host")
    try:
        bdf = normalize_bdf(p["bdf"])
        mgmt = management_bdfs(p["management_nics"], p["ssh_connection"])
        if bdf in mgmt:
            module.fail_json(msg="%s carries the management connection (%s) or shares its card; refusing to "
                                 "restore it over that connection: restore it from a console or another network"
                             % (bdf, p["ssh_connection"] or "listed in management_nics"))
        nics = [n for n in list_nics(p["romlab"]) if n["bdf"] == bdf]
        if not nics:
            module.fail_json(msg="no NIC at %s on this host" % bdf)
        target_args, _, desc = target_of(nics[0], p["targets"])
        _, doc = run_romlab(p["romlab"], ["restore", p["backup"]] + target_args + ["--no-progress"] +
                            (["--dry-run"] if module.check_mode else []),
                            {"ROMLAB_BACKUP_DIR": p["remote_backup_dir"]})
    except (ValueError, ManagementUnknown) as exc:
        module.fail_json(msg=str(exc))
    except RomlabFailed as exc:
        module.fail_json(msg="%s: %s" % (p["bdf"], exc), romlab_rc=exc.rc)
    if doc.get("changes") == "unknown":
        # Check mode on an in-system NIC whose driver holds its BAR: a check never unbinds.
        module.warn("%s: %s" % (bdf, doc.get("reason")))
        module.exit_json(changed=False, bdf=bdf, target=desc, backup=p["backup"], erase_bytes=0, program_bytes=0,
                         would_change="unknown", reason=doc.get("reason"))
    would = bool(doc.get("erase_bytes") or doc.get("program_bytes"))
    module.exit_json(changed=bool(doc.get("changed")) or (module.check_mode and would), bdf=bdf, target=desc,
                     backup=p["backup"], erase_bytes=doc.get("erase_bytes", 0),
                     program_bytes=doc.get("program_bytes", 0),
                     **({"previous_contents": doc["previous_contents"]} if doc.get("previous_contents") else {}))


if __name__ == "__main__":
    main()
