"""SPI NOR flashing: the chip layer, a chip model, serprog, programmers, the writer.

Modules: ``chips`` (parts NIC boards carry), ``sfdp`` (JEDEC self-description),
``spinor`` (commands to a part through any programmer), ``writer`` (minimal
erase/program with verify and retry), ``chipsim`` (a simulated part with fault
injection), ``serprog`` (the protocol and the programmer end), ``programmers``
(the host ends), ``image`` (option-ROM check, layouts), ``backup`` (backups and
the resume journal).
"""
