//! Host-side text masks for Grounding DINO exports of the original IDEA-Research code: their
//! graphs take `position_ids` [B,L] and `text_token_mask` [B,L,L] as inputs instead of
//! building them from the token ids (the Hugging Face export builds them inside its graph).
//!
//! The rule is `generate_masks_with_special_tokens_and_transfer_map` (IDEA-Research
//! GroundingDINO `models/GroundingDINO/bertwarper.py`, the same in `transformers`'
//! `modeling_grounding_dino.py`): the special tokens ([CLS], [SEP], ".", "?") close blocks;
//! tokens of one block attend to each other and their position ids restart at 0; a special
//! token in the first or last column attends only to itself with position 0; every other
//! token (padding) attends only to itself with position 0.

/// Position ids and the text self-attention mask of one padded batch of token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMasks {
    /// `[rows, len]`, row-major.
    pub position_ids: Vec<i64>,
    /// `[rows, len, len]`, row-major: `mask[r][i][j]` = token i may attend to token j.
    pub attention: Vec<bool>,
}

/// Builds the masks of `ids` (`rows` x `len`, row-major, padded) with `specials` the ids of
/// [CLS], [SEP], "." and "?" in the detector's tokenizer.
pub fn text_masks(ids: &[i64], rows: usize, len: usize, specials: &[i64]) -> TextMasks {
    let mut position_ids = vec![0i64; rows * len];
    let mut attention = vec![false; rows * len * len];
    for r in 0..rows {
        for i in 0..len {
            attention[(r * len + i) * len + i] = true;
        }
    }
    // The reference walks the special tokens of the whole batch in order and does not reset
    // its previous column between rows; every row starts with [CLS] (column 0), which sets it
    // to 0, so the walk is per row for tokenised captions.
    let mut previous = 0usize;
    for r in 0..rows {
        let row = &ids[r * len..(r + 1) * len];
        for (col, id) in row.iter().enumerate() {
            if !specials.contains(id) {
                continue;
            }
            if col == 0 || col == len - 1 {
                attention[(r * len + col) * len + col] = true;
                position_ids[r * len + col] = 0;
            } else {
                for i in previous + 1..=col {
                    for j in previous + 1..=col {
                        attention[(r * len + i) * len + j] = true;
                    }
                    position_ids[r * len + i] = (i - previous - 1) as i64;
                }
            }
            previous = col;
        }
    }
    TextMasks {
        position_ids,
        attention,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected values are what `transformers` 5.24's
    /// `generate_masks_with_special_tokens_and_transfer_map` returns for the same batch with
    /// special tokens [101, 102, 1012, 1029] (bert-base-uncased [CLS], [SEP], ".", "?").
    #[test]
    fn masks_equal_the_reference_on_a_padded_batch() {
        let ids = [
            101, 2000, 1012, 3000, 3001, 1012, 102, 0, //
            101, 2000, 1012, 102, 0, 0, 0, 0,
        ];
        let m = text_masks(&ids, 2, 8, &[101, 102, 1012, 1029]);
        assert_eq!(
            m.position_ids,
            vec![0, 0, 1, 0, 1, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
        );
        let want = [
            "10000000", "01100000", "01100000", "00011100", "00011100", "00011100", "00000010",
            "00000001", //
            "10000000", "01100000", "01100000", "00010000", "00001000", "00000100", "00000010",
            "00000001",
        ];
        let got: Vec<String> = m
            .attention
            .chunks_exact(8)
            .map(|row| row.iter().map(|&b| if b { '1' } else { '0' }).collect())
            .collect();
        assert_eq!(got, want);
    }
}
