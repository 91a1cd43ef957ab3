//! Internals that this crate's own integration tests and benchmarks drive
//! directly: a lock held by another process, a torn log replayed, a guest
//! booted by hand. Each module mirrors the internal one it names and holds
//! only what the tests use: a test that needs one more item adds it here.
//! Not API: nothing here is stable, and a harness needs only
//! [`crate::TemplateCache`].
//!
//! Everything else in the crate is `pub(crate)` (the `unreachable_pub` lint
//! keeps it so), so the items below are the whole surface tests reach.

/// What the tests use of `crate::cache`.
pub mod cache {
    /// What the tests use of `crate::cache::cleanup`.
    pub mod cleanup {
        pub use crate::cache::cleanup::{CleanMode, CleanOptions, clean};
    }
    /// What the tests use of `crate::cache::clone`.
    pub mod clone {
        pub use crate::cache::clone::{Method, Reflink, clone_file};
    }
    /// What the tests use of `crate::cache::ensure`.
    pub mod ensure {
        pub use crate::cache::ensure::{
            EnsureOptions, Ensured, Ensurer, HostMkfsBuilder, TemplateBuilder,
        };
        /// What the tests use of `crate::cache::ensure::batch`.
        pub mod batch {
            pub use crate::cache::ensure::batch::keys;
        }
    }
    /// What the tests use of `crate::cache::key`.
    pub mod key {
        pub use crate::cache::key::{Capacity, Key};
    }
    /// What the tests use of `crate::cache::last_use`.
    pub mod last_use {
        pub use crate::cache::last_use::record;
    }
    /// What the tests use of `crate::cache::lookup`.
    pub mod lookup {
        pub use crate::cache::lookup::{Entry, image_path, lookup};
    }
    /// What the tests use of `crate::cache::names`.
    pub mod names {
        pub use crate::cache::names::LOCKS_DIR;
    }
    /// What the tests use of `crate::cache::per_test`.
    pub mod per_test {
        pub use crate::cache::per_test::PerTestImage;
    }
    /// What the tests use of `crate::cache::publish`.
    pub mod publish {
        pub use crate::cache::publish::{IfValid, Outcome, publish};
    }
}
/// What the tests use of `crate::formatter`.
pub mod formatter {
    /// What the tests use of `crate::formatter::filesystem`.
    pub mod filesystem {
        pub use crate::formatter::filesystem::Filesystem;
    }
    /// What the tests use of `crate::formatter::fingerprint`.
    pub mod fingerprint {
        pub use crate::formatter::fingerprint::{find_formatter, fingerprint};
    }
}
/// What the tests use of `crate::guest`.
pub mod guest {
    /// What the tests use of `crate::guest::builder`.
    pub mod builder {
        pub use crate::guest::builder::GuestBuilder;
    }
    /// What the tests use of `crate::guest::checks`.
    pub mod checks {
        pub use crate::guest::checks::CheckSpec;
    }
    /// What the tests use of `crate::guest::initramfs`.
    pub mod initramfs {
        pub use crate::guest::initramfs::template_initramfs;
    }
    /// What the tests use of `crate::guest::logwrites`.
    pub mod logwrites {
        pub use crate::guest::logwrites::{Log, Torn, check_points, torn_states};
    }
    /// What the tests use of `crate::guest::nested`.
    pub mod nested {
        pub use crate::guest::nested::{
            NestedRun, NestedSpec, OuterInitramfs, TEMPLATE_KERNEL, run,
        };
    }
    /// What the tests use of `crate::guest::powerloss`.
    pub mod powerloss {
        pub use crate::guest::powerloss::{
            BREAK_ROOT_FSYNC, KERNEL_NAME, KERNELS, OpRecord, Recording, TEMPLATES,
            done_from_console,
        };
        /// What the tests use of `crate::guest::powerloss::flakey`.
        pub mod flakey {
            pub use crate::guest::powerloss::flakey::{
                Action, Fault, Found, SCENARIOS, StepRecord,
            };
        }
    }
    /// What the tests use of `crate::guest::protocol`.
    pub mod protocol {
        pub use crate::guest::protocol::{TemplateResult, Verified, Verify, cmdline};
    }
}
/// What the tests use of `crate::host`.
pub mod host {
    pub use crate::host::{cores, find_program, open_kvm, tsc_khz};
}
/// What the tests use of `crate::kernel`.
pub mod kernel {
    pub use crate::kernel::KernelKind;
    /// What the tests use of `crate::kernel::build`.
    pub mod build {
        pub use crate::kernel::build::{BuildOptions, Recipe, build, build_recipe};
    }
    /// What the tests use of `crate::kernel::key`.
    pub mod key {
        pub use crate::kernel::key::{KeyInputs, Toolchain};
    }
    /// What the tests use of `crate::kernel::modules`.
    pub mod modules {
        pub use crate::kernel::modules::GUEST_NEEDS;
        /// What the tests use of `crate::kernel::modules::index`.
        pub mod index {
            pub use crate::kernel::modules::index::ModuleIndex;
        }
        /// What the tests use of `crate::kernel::modules::plan`.
        pub mod plan {
            pub use crate::kernel::modules::plan::load_order;
        }
    }
    /// What the tests use of `crate::kernel::resolve`.
    pub mod resolve {
        pub use crate::kernel::resolve::{resolve_from_env, resolve_kvm_host_from_env};
    }
    /// What the tests use of `crate::kernel::source`.
    pub mod source {
        pub use crate::kernel::source::Source;
    }
    /// What the tests use of `crate::kernel::stock`.
    pub mod stock {
        pub use crate::kernel::stock::{
            BOOT_DIR, GuestKernel, MODULES_ROOT, StockKernel, boot_kernels,
        };
    }
    /// What the tests use of `crate::kernel::store`.
    pub mod store {
        pub use crate::kernel::store::{
            CONFIG_FILE, IMAGE_FILE, KernelStore, Provenance, ProvenanceOrigin, VMLINUX_FILE,
        };
    }
}
/// What the tests use of `crate::progress`.
pub mod progress {
    pub use crate::progress::Progress;
}
/// What the tests use of `crate::store`.
pub mod store {
    /// What the tests use of `crate::store::lock`.
    pub mod lock {
        pub use crate::store::lock::{Mode, holders, key_lock_path, try_lock};
    }
}
/// What the tests use of `crate::vmm`.
pub mod vmm {
    pub use crate::vmm::{VmConfig, run, run_measured};
}
