"""The lab: QEMU machines and the network around them.

One QEMU launcher (:mod:`romlab.lab.qemu`: the NIC spec, the KVM probe, QMP, the process
that never outlives romlab) runs every guest romlab starts: the firmware boots of ``boot`` and
``bench firmware`` (:mod:`.boot`, watched through :mod:`.console`), the Linux guests of ``vm``
(:mod:`.vm`) and the register relay behind ``nvm --qemu`` (:mod:`.regrelay`). Around them:
network namespaces and links (:mod:`.netns`), dnsmasq (:mod:`.dnsmasq`), where a booting NIC
finds its servers (:mod:`.bootnet`), the HTTP server (:mod:`.http`), ``serve`` for real machines
(:mod:`.serve`) and the DHCP probe it runs first (:mod:`.dhcpprobe`).
"""
