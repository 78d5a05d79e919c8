"""How romlab reaches PCI hardware; the lowest layer, importing nothing of romlab's own.

``errors`` (the error classes every layer raises), ``sysfs`` (attributes with one-line
errors), ``signals`` (holding Ctrl-C while hardware state is half changed), ``pci`` (one
PCI device: identity, config space, BARs, ROM BAR), ``mmio`` (register access through a
mapped BAR), ``vfio`` (a device through VFIO: regions, DMA, interrupts), ``vfio_bind`` (which
driver owns a device, with a record to restore from), ``access`` (sysfs or VFIO, chosen per
call, for ROM reads and register BARs), ``parts`` (the Intel NICs romlab knows).
"""
