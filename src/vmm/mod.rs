//! A small VMM on the rust-vmm crates (kvm-ioctls, vm-memory, linux-loader,
//! virtio-queue, vm-superio) that boots the template-building guest.
