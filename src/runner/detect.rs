//! Pick a runner for `--vmm auto`: the built-in VMM where KVM can boot a
//! stock kernel, else QEMU.

use std::sync::Once;

use anyhow::{Result, bail};

use super::GuestRunner;
use super::kvm::{KvmRunner, cannot_boot, kvm_boot_support};
use super::qemu::{Accel, QemuRunner};
use crate::runner::VmmChoice;

/// The runner for `--vmm`: `auto` takes the built-in VMM where KVM can boot
/// a stock kernel, else QEMU (with KVM acceleration only where KVM can boot
/// one, TCG otherwise), else fails saying why neither can run.
pub fn select_runner(choice: VmmChoice) -> Result<Box<dyn GuestRunner>> {
    choose(choice, kvm_boot_support(), QemuRunner::find)
}

/// [`select_runner`]'s decision, from what the host offers: whether its
/// KVM boots a kernel, and how to find QEMU with a given accelerator.
fn choose(
    choice: VmmChoice,
    kvm: Result<(), String>,
    find_qemu: impl FnOnce(Accel) -> Result<QemuRunner>,
) -> Result<Box<dyn GuestRunner>> {
    let accel = if kvm.is_ok() { Accel::Kvm } else { Accel::Tcg };
    match (choice, kvm) {
        (VmmChoice::Kvm | VmmChoice::Auto, Ok(())) => Ok(Box::new(KvmRunner)),
        (VmmChoice::Kvm, Err(why)) => Err(cannot_boot(&why)),
        (VmmChoice::Qemu, Ok(())) => Ok(Box::new(find_qemu(accel)?)),
        (VmmChoice::Qemu, Err(why)) => {
            let qemu = find_qemu(accel)?;
            under_emulation(&why);
            Ok(Box::new(qemu))
        }
        (VmmChoice::Auto, Err(why)) => match find_qemu(accel) {
            Ok(qemu) => {
                under_emulation(&why);
                Ok(Box::new(qemu))
            }
            Err(no_qemu) => bail!(
                "no VMM can boot the template guest: the built-in VMM cannot ({why}), and \
                 {no_qemu:#}"
            ),
        },
    }
}

/// Says, once per process and at the default level, that guests run
/// under QEMU's TCG and why: a build many times slower than it could be
/// deserves more than a -v line.
fn under_emulation(why: &str) {
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        tracing::warn!(
            "template builds run under emulation (QEMU's TCG, many times slower than KVM): {why}"
        );
    });
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    const PVM: &str = "/dev/kvm is PVM";

    /// Runs [`choose`]; returns the runner's name or the error, and the
    /// accelerator QEMU was asked for (None: QEMU was not looked for).
    fn pick(
        choice: VmmChoice,
        kvm: Result<(), &str>,
        qemu: bool,
    ) -> (Result<&'static str, String>, Option<Accel>) {
        let asked = Cell::new(None);
        let find = |accel| {
            asked.set(Some(accel));
            match qemu {
                true => Ok(QemuRunner::at("/usr/bin/qemu-system-x86_64".into(), accel)),
                false => bail!("qemu-system-x86_64 is not on PATH"),
            }
        };
        let got = choose(choice, kvm.map_err(str::to_owned), find);
        (
            got.map(|r| r.name()).map_err(|e| format!("{e:#}")),
            asked.get(),
        )
    }

    #[test]
    fn a_kvm_that_boots_kernels_gets_the_builtin_vmm_and_kvm_acceleration() {
        assert_eq!(pick(VmmChoice::Auto, Ok(()), true), (Ok("kvm"), None));
        assert_eq!(pick(VmmChoice::Kvm, Ok(()), false), (Ok("kvm"), None));
        let qemu = pick(VmmChoice::Qemu, Ok(()), true);
        assert_eq!(qemu, (Ok("qemu"), Some(Accel::Kvm)));
    }

    #[test]
    fn elsewhere_qemu_runs_with_tcg_and_kvm_is_refused_naming_both_ways_out() {
        let auto = pick(VmmChoice::Auto, Err(PVM), true);
        assert_eq!(auto, (Ok("qemu"), Some(Accel::Tcg)));
        let qemu = pick(VmmChoice::Qemu, Err(PVM), true);
        assert_eq!(qemu, (Ok("qemu"), Some(Accel::Tcg)));
        let (kvm, asked) = pick(VmmChoice::Kvm, Err(PVM), true);
        let err = kvm.unwrap_err();
        for needle in [PVM, "--vmm qemu", "--vmm auto"] {
            assert!(err.contains(needle), "{needle:?} missing from: {err}");
        }
        assert_eq!(asked, None);
    }

    #[test]
    fn with_neither_auto_says_why_for_each() {
        let err = pick(VmmChoice::Auto, Err(PVM), false).0.unwrap_err();
        assert!(err.contains(PVM) && err.contains("not on PATH"), "{err}");
    }
}
