"""SPI NOR flashing: the chip layer, the programmers' protocols, the writer and its safety net.

Modules: ``chips`` (parts NIC boards carry), ``sfdp`` (JEDEC self-description),
``spinor`` (commands to a part through any programmer), ``writer`` (minimal
erase/program with verify and retry), ``serprog`` and ``ch341a`` (the two wire
protocols), ``programmers`` (the host ends, including the in-system
``nicintel_spi`` and ``nicintel_eeprom``), ``image`` (option-ROM check, layouts),
``backup`` (backups and the write journal), ``session`` (the safe sequence around a
write, and which NICs romlab reaches in-system), ``nvm`` (Intel NVM words).

The simulators (a chip, the serprog and CH341A devices, a NIC's BAR 0) are in ``sim``, which
nothing else here imports. A NIC's registers (``hw.mmio``) and which Intel NICs there are and
where their flash registers sit (``hw.parts``) are in ``hw``; the BAR 0 of a NIC QEMU emulates
is reached through the lab's register relay (``romlab.lab.regrelay``).
"""
