//! The config parser must turn any text into a config or diagnostics, never a panic; what it
//! accepts must survive a render/parse round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = weir::config::parse("fuzz.conf", text) {
        let rendered = weir::config::render_config(&cfg);
        let again = weir::config::parse("fuzz.conf", &rendered).expect("rendered config must parse");
        assert_eq!(rendered, weir::config::render_config(&again));
    }
});
