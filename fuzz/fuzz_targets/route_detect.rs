//! `POST /v1/detect` with any body: a JSON answer, never a 500; on success one result per
//! image with one entry per phrase, scores above the threshold and numeric boxes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psr_reward_fuzz::{body, gen, post_and_check, request_len};

fuzz_target!(|data: &[u8]| {
    let Some(body) = body(data, gen::detect) else {
        return;
    };
    let (status, json) = post_and_check("/v1/detect", &body);
    if status.is_success() {
        let results = json["results"].as_array().expect("results");
        assert_eq!(Some(results.len()), request_len(&body, "images"));
        let threshold = json["box_threshold"].as_f64().expect("box_threshold");
        for r in results {
            let phrases = r["phrases"].as_array().expect("phrases");
            assert_eq!(Some(phrases.len()), request_len(&body, "phrases"));
            for d in phrases
                .iter()
                .flat_map(|p| p["detections"].as_array().expect("dets"))
            {
                let score = d["score"].as_f64().expect("score");
                assert!(score > threshold && score <= 1.0, "{d}");
                let bbox = d["box"].as_array().expect("box");
                assert!(bbox.len() == 4 && bbox.iter().all(|v| v.is_f64()), "{d}");
            }
        }
    }
});
