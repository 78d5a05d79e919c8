"""SPI NOR flashing: the chip layer, a chip model, serprog, programmers, the writer.

Modules: ``chips`` (parts NIC boards carry), ``sfdp`` (JEDEC self-description),
``spinor`` (commands to a part through any programmer), ``writer`` (minimal
erase/program with verify and retry), ``chipsim`` (a simulated part with fault
injection), ``serprog`` (the protocol and the programmer end), ``programmers``
(the host ends, including the in-system ``nicintel_spi`` and
``nicintel_eeprom``), ``image`` (option-ROM check, layouts), ``backup``
(backups and the resume journal), ``bar`` (a NIC's register BAR behind
read32/write32), ``nicfamily`` (which Intel NICs, where their registers are),
``nicsim`` (a register-level double of an Intel NIC's BAR0). The BAR0 of a NIC
QEMU emulates is reached through the lab's register relay (``romlab.lab.regrelay``).
"""
