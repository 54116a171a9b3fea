//! Prints the generated C map header (`programs/include/weir_maps.h`) to stdout.
//!
//! Used by `make -C programs header`.

use std::io::Write;

fn main() {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(maps_schema::c_header().as_bytes()) {
        eprintln!("weir-gen-header: writing to stdout: {e}");
        std::process::exit(1);
    }
}
