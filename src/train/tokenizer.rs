//! Training the shared tokenizer (BPE, T5 conventions) with the tokenizers crate.

use anyhow::{anyhow, Result};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

/// Special tokens in T5's order: `<pad>` = 0 (also the decoder start), `</s>` = 1, `<unk>` = 2.
pub const SPECIAL_TOKENS: [&str; 3] = ["<pad>", "</s>", "<unk>"];

/// Train a BPE tokenizer of `vocab_size` entries on `texts`: Metaspace pre-tokenization and
/// decoding (`▁` marks word starts, as sentencepiece does), `</s>` appended to every encoded
/// sequence. Deterministic for the same texts.
pub fn train_tokenizer(texts: &[String], vocab_size: usize) -> Result<Tokenizer> {
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .special_tokens(specials)
        .show_progress(false)
        .build()
        .into();
    let model = BPE::builder()
        .unk_token("<unk>".to_string())
        .build()
        .map_err(|e| anyhow!("cannot build the BPE model: {e}"))?;
    let mut tokenizer = Tokenizer::new(model);
    let metaspace = Metaspace::new('▁', PrependScheme::Always, true);
    tokenizer.with_pre_tokenizer(Some(metaspace.clone()));
    tokenizer.with_decoder(Some(metaspace));
    tokenizer
        .train(&mut trainer, texts.iter())
        .map_err(|e| anyhow!("tokenizer training failed: {e}"))?;
    for (id, token) in SPECIAL_TOKENS.iter().enumerate() {
        if tokenizer.token_to_id(token) != Some(id as u32) {
            return Err(anyhow!("special token {token} did not get id {id}"));
        }
    }
    let template = TemplateProcessing::builder()
        .try_single("$A </s>")
        .map_err(|e| anyhow!("{e}"))?
        .try_pair("$A </s> $B </s>")
        .map_err(|e| anyhow!("{e}"))?
        .special_tokens(vec![("</s>", 1)])
        .build()
        .map_err(|e| anyhow!("cannot build the post-processor: {e}"))?;
    tokenizer.with_post_processor(Some(template));
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        let words = [
            "the", "cat", "sat", "on", "mat", "dog", "runs", "ran", "running", "cats", "le",
            "chat", "était", "assis",
        ];
        (0..300)
            .map(|i| {
                (0..6)
                    .map(|j| words[(i * 7 + j * 3 + i / 5) % words.len()])
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn trains_deterministically_with_t5_conventions() {
        let a = train_tokenizer(&corpus(), 60).unwrap();
        let b = train_tokenizer(&corpus(), 60).unwrap();
        assert_eq!(a.to_string(false).unwrap(), b.to_string(false).unwrap());
        let encoding = a.encode("the cat était assis", true).unwrap();
        assert_eq!(*encoding.get_ids().last().unwrap(), 1);
        assert_eq!(
            a.decode(encoding.get_ids(), true).unwrap(),
            "the cat était assis"
        );
    }
}
