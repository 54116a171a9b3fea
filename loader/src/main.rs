//! The `weir` command.

fn main() {
    std::process::exit(weir::cli::main());
}
