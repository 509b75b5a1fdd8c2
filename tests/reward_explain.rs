//! `POST /v1/reward` with `"explain": true` on the fixture models: the annotated image has
//! the generated image's size and the subject's outline exactly where the reported box is,
//! the crops are the pixels the service embedded (their embeddings give the reported
//! similarity), and sizes stay bounded (large images scaled, at most 8 items).

mod common;

use common::*;
use serde_json::{json, Value};

const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];

fn decode_png(v: &Value) -> image::RgbImage {
    let bytes = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        v.as_str().expect("a base64 PNG"),
    )
    .unwrap();
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        image::ImageFormat::Png
    );
    image::load_from_memory(&bytes).unwrap().to_rgb8()
}

fn colour(hex: &Value) -> [u8; 3] {
    let h = hex.as_str().unwrap().trim_start_matches('#');
    let c = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).unwrap();
    [c(0), c(2), c(4)]
}

fn window(b: &Value) -> [u32; 4] {
    let v: Vec<u32> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    [v[0], v[1], v[2], v[3]]
}

fn crop(img: &image::RgbImage, [x0, y0, x1, y1]: [u32; 4]) -> image::RgbImage {
    image::imageops::crop_imm(img, x0, y0, x1 - x0, y1 - y0).to_image()
}

async fn embed(s: &TestServer, img: &image::RgbImage) -> Vec<f64> {
    let (status, _, body) = s
        .post("/v1/embed", &json!({"images": [b64(&png(img))]}))
        .await;
    assert_eq!(status, 200, "{body}");
    as_f64s(&body["embeddings"][0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explanation_outlines_each_reported_box_and_returns_the_embedded_crops() {
    let s = TestServer::start().await;
    // A red square top left and a blue one bottom right; the references hold the same
    // colours elsewhere, at other sizes.
    let generated = scene(
        240,
        200,
        &[(20, 30, 90, 95, RED), (150, 120, 220, 185, BLUE)],
    );
    let red_ref = scene(120, 120, &[(10, 20, 70, 90, RED)]);
    let blue_ref = scene(100, 140, &[(5, 5, 60, 50, BLUE)]);
    let body = json!({"rewards": {"subject_consistency": 1.0}, "explain": true, "items": [{
        "image": b64(&png(&generated)),
        "subjects": [
            {"name": "red", "reference": b64(&png(&red_ref))},
            {"name": "blue", "reference": b64(&png(&blue_ref))}]}]});
    let (status, _, out) = s.post("/v1/reward", &body).await;
    assert_eq!(status, 200, "{out}");
    let result = &out["results"][0];
    let explanation = &result["explanation"];
    let annotated = decode_png(&explanation["image"]);
    assert_eq!(annotated.dimensions(), generated.dimensions());
    assert_eq!(explanation["scale"], 1.0);
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    annotated
        .save(artifacts.join("explain-annotated.png"))
        .unwrap();

    let subjects = result["components"]["subject_consistency"]["subjects"]
        .as_array()
        .unwrap();
    let references = [&red_ref, &blue_ref];
    for (k, subject) in subjects.iter().enumerate() {
        let crops = &explanation["subjects"][k];
        assert_eq!(crops["name"], subject["name"]);
        let [x0, y0, x1, y1] = window(&subject["box"]);
        let c = image::Rgb(colour(&crops["color"]));
        let (mid_x, mid_y) = ((x0 + x1) / 2, (y0 + y1) / 2);
        for (x, y, edge) in [
            (x0, mid_y, "left"),
            (x1 - 1, mid_y, "right"),
            (mid_x, y1 - 1, "bottom"),
        ] {
            assert_eq!(
                annotated.get_pixel(x, y),
                &c,
                "{} {edge} edge",
                subject["name"]
            );
        }
        // The box's inside keeps the image's pixels.
        assert_eq!(
            annotated.get_pixel(mid_x, mid_y),
            generated.get_pixel(mid_x, mid_y)
        );

        // The crops are the reported boxes' pixels ...
        let generated_crop = decode_png(&crops["generated_crop"]);
        assert_eq!(generated_crop, crop(&generated, [x0, y0, x1, y1]));
        let reference_crop = decode_png(&crops["reference_crop"]);
        assert_eq!(
            reference_crop,
            crop(references[k], window(&subject["reference_box"]))
        );
        // ... and the ones that were embedded: their embeddings give the reported similarity.
        let similarity = cosine(
            &embed(&s, &generated_crop).await,
            &embed(&s, &reference_crop).await,
        );
        let reported = subject["similarity"].as_f64().unwrap();
        assert!(
            (similarity - reported).abs() < 1e-5,
            "{similarity} vs {reported}"
        );
    }
    assert_ne!(
        explanation["subjects"][0]["color"], explanation["subjects"][1]["color"],
        "each subject has its own colour"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_images_are_scaled_and_fallbacks_show_the_whole_image() {
    let s = TestServer::start().await;
    // 2000x1000 with a red subject; "blue" is absent (not detected: the whole image).
    let generated = scene(2000, 1000, &[(200, 100, 800, 600, RED)]);
    let red_ref = scene(300, 300, &[(50, 50, 250, 250, RED)]);
    let blue_ref = scene(300, 300, &[(50, 50, 250, 250, BLUE)]);
    let first = json!({"rewards": {"subject_consistency": 1.0}, "items": [{
        "image": b64(&png(&red_ref)),
        "subjects": [{"name": "red", "reference": b64(&png(&red_ref))}]}]});
    let (status, _, out) = s.post("/v1/reward", &first).await;
    assert_eq!(status, 200, "{out}");
    assert!(
        out["results"][0].get("explanation").is_none(),
        "explain is off by default"
    );
    let red_hash =
        out["results"][0]["components"]["subject_consistency"]["subjects"][0]["reference"].clone();

    let body = json!({"rewards": {"subject_consistency": 1.0}, "explain": true, "items": [{
        "image": b64(&png(&generated)),
        "subjects": [
            {"name": "red", "reference": {"ref": red_hash}},
            {"name": "blue", "reference": b64(&png(&blue_ref))}]}]});
    let (status, _, out) = s.post("/v1/reward", &body).await;
    assert_eq!(status, 200, "{out}");
    let result = &out["results"][0];
    let explanation = &result["explanation"];
    assert_eq!(decode_png(&explanation["image"]).dimensions(), (1024, 512));
    assert_eq!(explanation["scale"], 0.512);
    let red = &explanation["subjects"][0];
    let [x0, y0, x1, y1] =
        window(&result["components"]["subject_consistency"]["subjects"][0]["box"]);
    let longest = (x1 - x0).max(y1 - y0);
    let crop_size = decode_png(&red["generated_crop"]).dimensions();
    assert_eq!(
        crop_size.0.max(crop_size.1),
        256,
        "{crop_size:?} from a {longest} px box"
    );
    assert!(
        red["reference_crop"].is_null(),
        "a reference sent by hash has no pixels here"
    );

    let blue_score = &result["components"]["subject_consistency"]["subjects"][1];
    assert_eq!(blue_score["fallback"], "not_detected", "{blue_score}");
    let blue = &explanation["subjects"][1];
    assert_eq!(decode_png(&blue["generated_crop"]).dimensions(), (256, 128));
    assert_eq!(
        decode_png(&blue["reference_crop"]),
        crop(&blue_ref, window(&blue_score["reference_box"]))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explanations_are_bounded_to_eight_items() {
    let s = TestServer::start().await;
    let item = json!({"image": solid_b64(64, 64, RED),
        "subjects": [{"name": "red", "reference": solid_b64(32, 32, RED)}]});
    let body = |n: usize| {
        json!({"rewards": {"subject_consistency": 1.0}, "explain": true,
            "items": vec![item.clone(); n]})
    };
    let (status, _, out) = s.post("/v1/reward", &body(9)).await;
    assert_eq!(status, 422, "{out}");
    assert_eq!(out["error_type"], "request_too_large");
    assert!(out["error"].as_str().unwrap().contains("explain"), "{out}");
    let (status, _, out) = s.post("/v1/reward", &body(8)).await;
    assert_eq!(status, 200, "{out}");
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), 8);
    assert!(results
        .iter()
        .all(|r| r["explanation"]["image"].is_string()));
    s.stop().await;
}
