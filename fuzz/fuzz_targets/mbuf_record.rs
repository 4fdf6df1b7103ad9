//! One mbuf_trace record: decoding never panics, and what encodes decodes
//! to the same strings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pktpath_core::formats::mbuf_trace::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = decode(data, 0) {
        let again = encode(&rec.strings, rec.frame);
        let back = decode(&again, 0).expect("our own encoding decodes");
        assert_eq!(back.frame, rec.frame);
        assert_eq!(back.strings.len(), rec.strings.len());
    }
});
