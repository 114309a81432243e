"""The OpenSSH layer: the rules of OpenSSH this product needs, each written once.

Pure modules (no network, no context) that checks, the wizard and fix texts all use; each
names the OpenSSH source file it follows and is tested against the real binaries
(``ssh -G``, ``sshd -T``, a real login) and the real-world files of shared/corpus/openssh.
``session`` is the one module that runs ssh: the run's SSH connection.
"""
