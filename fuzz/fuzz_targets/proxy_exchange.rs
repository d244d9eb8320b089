#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aitrail_fuzz::proxy_exchange(data));
