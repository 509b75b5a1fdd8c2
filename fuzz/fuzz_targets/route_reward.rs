//! `POST /v1/reward` with any body: a JSON answer, never a 500; on success one result per
//! item whose reward is a finite number, or null with the reason in `errors`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psr_reward_fuzz::{body, gen, post_and_check, request_len};

fuzz_target!(|data: &[u8]| {
    let Some(body) = body(data, gen::reward) else {
        return;
    };
    let (status, json) = post_and_check("/v1/reward", &body);
    if status.is_success() {
        let results = json["results"].as_array().expect("results");
        assert_eq!(Some(results.len()), request_len(&body, "items"));
        for r in results {
            let explained = r["errors"].as_object().is_some_and(|e| !e.is_empty());
            match &r["reward"] {
                serde_json::Value::Number(n) => {
                    assert!(n.as_f64().is_some_and(f64::is_finite), "{r}")
                }
                serde_json::Value::Null => assert!(explained, "null reward without a reason: {r}"),
                other => panic!("reward is {other}"),
            }
        }
    }
});
