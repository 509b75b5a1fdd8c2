//! `POST /v1/reward`, the copy-paste guard through the service on the fixture models: a
//! generated image that pastes the reference scores a near-perfect subject consistency (the
//! hack), the guard flags it, and its penalty ranks it below an honest new rendering.

mod common;
mod copy_paste;

use common::*;
use copy_paste::scenes::{drawn_top_left as drawn, textured_red};
use serde_json::{json, Value};

fn body(mode: &str, image: &str, reference: Value, extra: Value) -> Value {
    let mut b = json!({"mode": mode, "rewards": {"subject_consistency": 1.0}, "items": [
        {"image": image, "subjects": [{"name": "red", "reference": reference}]}]});
    if let (Some(b), Some(extra)) = (b.as_object_mut(), extra.as_object()) {
        b.extend(extra.clone());
    }
    b
}

async fn reward(s: &TestServer, body: Value) -> Value {
    let (status, _, out) = s.post("/v1/reward", &body).await;
    assert_eq!(status, 200, "{out}");
    out["results"][0].clone()
}

fn subject(r: &Value) -> &Value {
    &r["components"]["subject_consistency"]["subjects"][0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasted_reference_is_flagged_and_its_penalty_ranks_it_below_an_honest_rendering() {
    let s = TestServer::start().await;
    let (reference_img, b) = drawn(&textured_red(0.0));
    let reference = b64(&png(&reference_img));
    // The hack: the reference's crop pasted into another image, elsewhere.
    let crop = image::imageops::crop_imm(&reference_img, b[0], b[1], b[2] - b[0], b[3] - b[1]);
    let mut pasted_img = image::RgbImage::new(400, 400);
    image::imageops::replace(&mut pasted_img, &*crop, 210, 230);
    let pasted = b64(&png(&pasted_img));
    // An honest image: the same object drawn anew, turned by 35 degrees.
    let honest = b64(&png(&drawn(&textured_red(35f64.to_radians())).0));

    // psr mode: no penalty unless asked; the paste wins on similarity alone.
    let p = reward(&s, body("psr", &pasted, json!(reference), json!({}))).await;
    let h = reward(&s, body("psr", &honest, json!(reference), json!({}))).await;
    let (ps, hs) = (subject(&p), subject(&h));
    assert!(ps["similarity"].as_f64().unwrap() > 0.999, "{ps}");
    assert!(p["reward"].as_f64().unwrap() > h["reward"].as_f64().unwrap());
    assert_eq!(p.get("copy_paste_penalty"), None);
    assert_eq!(ps["copy_paste"]["suspected"], true, "{ps}");
    assert!(ps["copy_paste"]["score"].as_f64().unwrap() > 0.95, "{ps}");
    assert_eq!(hs["copy_paste"]["suspected"], false, "{hs}");
    assert!(hs["copy_paste"]["score"].as_f64().unwrap() < 0.75, "{hs}");

    // robust mode applies the configured penalty (0.5 x 1 of 1 subjects); the honest image's
    // reference comes from the cache by hash, its thumbnail with it.
    let hash = ps["reference"].as_str().unwrap().to_string();
    let cached = json!({"ref": hash});
    let p = reward(&s, body("robust", &pasted, json!(reference), json!({}))).await;
    let h = reward(&s, body("robust", &honest, cached.clone(), json!({}))).await;
    assert!(subject(&h)["copy_paste"]["score"].as_f64().is_some(), "{h}");
    assert_eq!(p["copy_paste_penalty"], 0.5);
    assert_eq!(h["copy_paste_penalty"], 0.0);
    let sc = p["components"]["subject_consistency"]["score"]
        .as_f64()
        .unwrap();
    assert!(
        (p["reward"].as_f64().unwrap() - (sc - 0.5)).abs() < 1e-12,
        "{p}"
    );
    assert!(
        p["reward"].as_f64().unwrap() < h["reward"].as_f64().unwrap(),
        "pasted {p}\nhonest {h}"
    );
    // A request sets its own policy, in either mode.
    let asked = json!({"copy_paste": {"penalty": 0.2, "threshold": 0.9}});
    let p = reward(&s, body("psr", &pasted, cached.clone(), asked)).await;
    assert_eq!(p["copy_paste_penalty"], 0.2);
    let bad = body(
        "psr",
        &pasted,
        cached,
        json!({"copy_paste": {"threshold": 2.0}}),
    );
    let (status, _, out) = s.post("/v1/reward", &bad).await;
    assert_eq!(status, 422, "{out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("copy_paste.threshold"),
        "{out}"
    );
    assert_eq!(
        s.metric(r#"psr_reward_copy_paste_checks_total{outcome="suspected"}"#)
            .await,
        3.0
    );
    assert_eq!(
        s.metric(r#"psr_reward_copy_paste_checks_total{outcome="clear"}"#)
            .await,
        2.0
    );
    s.stop().await;
}
