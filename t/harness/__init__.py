"""Test harness of the VM-X gateway: servers started on loopback free ports."""
