//! Pick a runner for `--vmm auto`: the built-in VMM where KVM can boot a stock kernel, else QEMU.
