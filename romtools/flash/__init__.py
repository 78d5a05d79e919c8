"""SPI NOR flashing: the chip layer, a chip model, serprog, programmers, the writer.

Modules: ``chips`` (parts NIC boards carry), ``sfdp`` (JEDEC self-description),
``spinor`` (commands to a part through any programmer), ``writer`` (minimal
erase/program with verify and retry), ``chipsim`` (a simulated part with fault
injection), ``serprog`` (the protocol and the programmer end), ``programmers``
(the host ends, including the in-system ``nicintel_spi`` and
``nicintel_eeprom``), ``image`` (option-ROM check, layouts), ``backup``
(backups and the resume journal), ``session`` (the safe sequence around a
write, and which NICs romlab reaches in-system), ``nicsim`` (a register-level double of an Intel NIC's BAR0), ``qemubar`` (BAR0
of a NIC QEMU emulates, with no guest OS). A NIC's registers (``hw.mmio``) and
which Intel NICs there are and where their flash registers sit (``hw.parts``) are in ``hw``.
"""
