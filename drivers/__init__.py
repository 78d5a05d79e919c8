"""NIC drivers: native user-space drivers and the ROM's own UNDI."""
