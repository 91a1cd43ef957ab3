//! `cargo-ktstr`: the command line lives in the library ([`cargo_ktstr::cli_main`]),
//! so the binary and the crate's tests share one build of it.

fn main() -> std::process::ExitCode {
    cargo_ktstr::cli_main()
}
