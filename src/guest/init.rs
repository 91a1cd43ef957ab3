//! PID 1 in the template guest.

/// Runs as the guest's init; never returns.
pub fn run() -> ! {
    eprintln!("cargo-ktstr: the guest init is not wired yet");
    std::process::exit(1)
}
