//! Any bytes as a capture file (pcapng, pcap, mbuf_trace, JSON lines): an
//! error, journeys, or journeys and then an error; never a panic, and the journeys render.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pktpath_core::formats::step_line;
use pktpath_core::sinks::{json::Json, terminal::Terminal, Sink};

fuzz_target!(|data: &[u8]| {
    let mut term = Terminal::new(std::io::sink(), false, false);
    let mut json = Json::new(std::io::sink(), false);
    for r in &pktpath_core::formats::read(data).journeys {
        term.journey(&r.journey).unwrap();
        json.journey(&r.journey).unwrap();
        let _ = step_line::comments(&r.journey);
    }
});
