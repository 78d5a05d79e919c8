"""Simulators of what flashing talks to, for tests, dry runs and the lab.

``chip`` (a SPI NOR part with timings and fault injection), ``serprog`` and
``serprog_server`` (a serprog programmer over TCP, ``romlab serprog-emu``),
``ch341a`` and ``ch341a_gadget`` (a CH341A's device side, on its own or as a
real USB gadget), ``nic`` (a register-level double of an Intel NIC's BAR0 with
its SPI flash or Microwire EEPROM) and ``fileprog`` (a flash image file driven
as a chip). Nothing outside this package in ``romtools.flash`` imports it: the
protocols are written against the real parts, and each simulator is checked
against a real peer (flashrom) in the tests.
"""
