# -*- coding: utf-8 -*-
# Copyright: romlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The O(targets) option, which the three modules take alike so one list serves a whole play."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  targets:
    description:
      - NICs whose flash chip is reached through an external programmer clipped onto it, each named
        by PCI address or MAC address. A NIC not listed is reached in-system
        (C(romlab flash --pci BDF --unbind), Intel NICs with a flash interface only).
      - M(romlab.fleet.romlab_facts), M(romlab.fleet.romlab_flash) and M(romlab.fleet.romlab_restore)
        take the same list.
    type: list
    elements: dict
    default: []
    suboptions:
      bdf:
        description: The NIC, by PCI address. One of O(targets[].bdf) and O(targets[].mac) is required.
        type: str
      mac:
        description: The NIC, by the MAC address of one of its interfaces.
        type: str
      programmer:
        description: A romlab programmer spec clipped onto this NIC's flash, e.g. C(serprog:tcp=10.0.2.2:4242) or C(ch341a).
        type: str
      layout:
        description:
          - Where the ROM goes on the chip (C(rom-at-0), C(i210) or a layout file on the host).
          - Only M(romlab.fleet.romlab_flash) uses it; facts read and a restore writes the whole chip.
        type: str
"""
