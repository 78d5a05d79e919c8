# -*- coding: utf-8 -*-
# Copyright: romlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's half of romlab_flash: copy the ROMs to the host, let the module plan and back
up, fetch every backup into ``backup_dir`` and check its sha256 here, and only then let the module
write. A backup that did not arrive intact stops the host before its flash is touched."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import time

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible_collections.romlab.fleet.plugins.plugin_utils.session import ssh_connection
from ansible_collections.romlab.fleet.plugins.module_utils.fleet import sha256_file


def controller_dir(backup_dir, host, bdf):
    """backup_dir/HOST/BDF: every backup of one NIC of one host, the restore playbook's search path."""
    return os.path.join(backup_dir, host, bdf.replace(":", "-"))


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = dict(self._task.args)
        host = task_vars.get("inventory_hostname")
        if not args.get("backup_dir"):
            raise AnsibleActionFail("backup_dir (a directory on the controller for the chips' backups) is required")
        backup_dir = os.path.abspath(os.path.expanduser(to_text(args["backup_dir"])))
        roms = args.get("roms")
        if not isinstance(roms, dict) or not roms:
            raise AnsibleActionFail("roms must map PCI IDs (vendor:device) to ROM files on the controller")

        # The ROM files go to the host under the task's temporary directory, named by their sha256.
        if not self._connection._shell.tmpdir:
            self._make_tmp_path()
        remote_roms = {}
        for pci_id, src in roms.items():
            local = self._find_needle("files", to_text(src))
            with open(local, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
            dest = self._connection._shell.join_path(self._connection._shell.tmpdir, "rom-%s.rom" % digest[:16])
            self._transfer_file(local, dest)
            remote_roms[pci_id] = dest
        self._fixup_perms2([self._connection._shell.tmpdir])
        args["roms"] = remote_roms

        conn = ssh_connection(self)
        if conn:
            args["ssh_connection"] = conn
        plan = self._execute_module(module_name="romlab.fleet.romlab_flash", module_args=dict(args, stage="plan"),
                                    task_vars=task_vars)
        if plan.get("failed") and plan.get("pending_backup") and plan.get("pending_bdf"):
            # The chip holds an unfinished write: point at the controller's copy of the backup taken before it.
            local = os.path.join(controller_dir(backup_dir, host, plan["pending_bdf"]),
                                 os.path.basename(plan["pending_backup"]))
            if os.path.isfile(local):
                plan["controller_backup"] = local
                plan["msg"] = "%s; on the controller: ansible-playbook restore.yml -l %s -e romlab_restore_bdf=%s " \
                              "-e romlab_backup=%s" % (plan.get("msg"), host, plan["pending_bdf"], local)
        if plan.get("failed"):
            self._remove_tmp_path(self._connection._shell.tmpdir)
            return dict(result, **plan)
        if self._play_context.check_mode or not any(n.get("changed") for n in plan.get("nics", [])):
            self._remove_tmp_path(self._connection._shell.tmpdir)
            return dict(result, **plan)

        # Fetch each backup and check it here before any chip is written.
        expect = {}
        for nic in plan["nics"]:
            if not nic.get("changed"):
                continue
            ddir = controller_dir(backup_dir, host, nic["bdf"])
            os.makedirs(ddir, exist_ok=True)
            name = os.path.basename(nic["backup"])
            local_bin = os.path.join(ddir, name)
            local_rec = local_bin[:-4] + ".json" if local_bin.endswith(".bin") else local_bin + ".json"
            self._connection.fetch_file(nic["backup"], local_bin)
            remote_rec = nic["backup"][:-4] + ".json" if nic["backup"].endswith(".bin") else nic["backup"] + ".json"
            self._connection.fetch_file(remote_rec, local_rec)
            got = sha256_file(local_bin)
            try:
                with open(local_rec) as fh:
                    record = json.load(fh)
            except (OSError, ValueError) as exc:
                raise AnsibleActionFail("%s: the backup record %s did not arrive readable (%s); nothing was written"
                                        % (nic["bdf"], local_rec, exc))
            if got != nic["backup_sha256"] or record.get("sha256") != got:
                raise AnsibleActionFail("%s: the backup fetched into %s has sha256 %s, the host read %s (record %s); "
                                        "nothing was written" % (nic["bdf"], local_bin, got, nic["backup_sha256"],
                                                                 record.get("sha256")))
            # Whose chip this is, for the restore: romlab checks the chip model, this the host and NIC.
            with open(local_bin[:-4] + ".fleet.json", "w") as fh:
                json.dump({"host": host, "bdf": nic["bdf"], "id": nic["id"], "target": nic["target"],
                           "sha256": got, "host_path": nic["backup"],
                           "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, fh, indent=2)
            nic["controller_backup"] = local_bin
            expect[nic["bdf"]] = {"sha256": got, "backup": nic["backup"], "controller_backup": local_bin}

        done = self._execute_module(module_name="romlab.fleet.romlab_flash",
                                    module_args=dict(args, stage="write", expect=expect), task_vars=task_vars)
        # A completed write marks its backup: the restore's default is the oldest backup after the last of these.
        for nic in done.get("nics", []):
            if nic.get("bdf") in expect and nic.get("changed") and not nic.get("failed"):
                fleet = expect[nic["bdf"]]["controller_backup"][:-4] + ".fleet.json"
                with open(fleet) as fh:
                    owner = json.load(fh)
                owner["write_completed"] = True
                with open(fleet, "w") as fh:
                    json.dump(owner, fh, indent=2)
        self._remove_tmp_path(self._connection._shell.tmpdir)
        # The plan's diff and backups stay in the report; the write adds what it did.
        by_bdf = dict((n["bdf"], n) for n in done.get("nics", []))
        for nic in plan["nics"]:
            nic.update(by_bdf.get(nic["bdf"], {}))
        done["nics"] = plan["nics"]
        if "diff" in plan:
            done["diff"] = plan["diff"]
        return dict(result, **done)
