"""How bytes reach hardware: PCI via sysfs, VFIO, USB, serial."""
