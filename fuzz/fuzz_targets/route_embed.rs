//! `POST /v1/embed` with any body: a JSON answer, never a 500; on success one finite
//! embedding of the advertised size per image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psr_reward_fuzz::{body, gen, post_and_check, request_len};

fuzz_target!(|data: &[u8]| {
    let Some(body) = body(data, gen::embed) else {
        return;
    };
    let (status, json) = post_and_check("/v1/embed", &body);
    if status.is_success() {
        let embeddings = json["embeddings"].as_array().expect("embeddings");
        assert_eq!(Some(embeddings.len()), request_len(&body, "images"));
        let dims = json["dimensions"].as_u64().expect("dimensions") as usize;
        for e in embeddings {
            let e = e.as_array().expect("embedding");
            assert_eq!(e.len(), dims);
            assert!(
                e.iter().all(|v| v.as_f64().is_some_and(f64::is_finite)),
                "{json}"
            );
        }
    }
});
