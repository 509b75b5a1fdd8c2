//! Caption tokenisation with the fixture tokenizer (BERT pipeline) on any text: results
//! respect the length limit, truncation keeps the closing token, joint-caption spans index
//! real token columns.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use psr_reward::models::{category_caption, CaptionTokenizer};

/// The fixture tokenizer at the detector's limit (256) and at a tight one (6 tokens).
fn tokenizers() -> &'static [(CaptionTokenizer, usize); 2] {
    static T: OnceLock<[(CaptionTokenizer, usize); 2]> = OnceLock::new();
    T.get_or_init(|| {
        let path = psr_reward_fuzz::fixtures_dir().join("tokenizer.json");
        let load = |max| {
            (
                CaptionTokenizer::load(&path, max).expect("fixture tokenizer"),
                max,
            )
        };
        [load(256), load(6)]
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (tok, max) in tokenizers() {
        let max = *max;
        if let Ok(caption) = category_caption(&text) {
            assert!(caption.ends_with('.'));
            if let Ok(ids) = tok.encode(&caption) {
                assert!(ids.len() <= max && ids.len() >= 2);
                // [CLS] ... [SEP], ids inside the 58-token vocabulary.
                assert_eq!((ids[0], ids[ids.len() - 1]), (2, 3), "{ids:?}");
                assert!(ids.iter().all(|&i| (0..58).contains(&i)), "{ids:?}");
            }
        }
        if let Ok(truncated) = tok.encode_truncated(&text) {
            assert!(
                truncated.len() <= max && truncated.last() == Some(&3),
                "{truncated:?}"
            );
            if let Ok(ids) = tok.encode(&text) {
                assert_eq!(ids, truncated, "untruncated encodings agree");
            }
        }
        // Categories separated by '|', as several subjects of one item.
        let categories: Vec<&str> = text.split('|').take(8).collect();
        if let Ok((ids, spans)) = tok.encode_joint(&categories) {
            assert_eq!(spans.len(), categories.len());
            for s in &spans {
                assert!(
                    s.start < s.end && s.end <= ids.len(),
                    "{s:?} of {}",
                    ids.len()
                );
            }
        }
    }
});
