//! Training the shared tokenizer (BPE, T5 conventions) with the tokenizers crate.

use anyhow::{anyhow, Result};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

/// Special tokens in T5's order: `<pad>` = 0 (also the decoder start), `</s>` = 1, `<unk>` = 2.
pub const SPECIAL_TOKENS: [&str; 3] = ["<pad>", "</s>", "<unk>"];

/// Special tokens of a decoder-only (prompt → completion) tokenizer: T5's three, then the
/// separator that ends every prompt (`<sep>` = 3).
pub const PROMPT_SPECIAL_TOKENS: [&str; 4] = ["<pad>", "</s>", "<unk>", "<sep>"];

/// A BPE model of `vocab_size` entries trained on `texts` with `specials` at ids 0, 1, …:
/// Metaspace pre-tokenization and decoding (`▁` marks word starts, as sentencepiece does), no
/// post-processing yet. Deterministic for the same texts.
fn train_bpe(texts: &[String], vocab_size: usize, specials: &[&str]) -> Result<Tokenizer> {
    let added: Vec<AddedToken> = specials
        .iter()
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .special_tokens(added)
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
    for (id, token) in specials.iter().enumerate() {
        if tokenizer.token_to_id(token) != Some(id as u32) {
            return Err(anyhow!("special token {token} did not get id {id}"));
        }
    }
    Ok(tokenizer)
}

/// Append `single` (and `pair`) to every encoding, e.g. `$A </s>`.
fn with_template(
    mut tokenizer: Tokenizer,
    single: &str,
    pair: &str,
    specials: Vec<(&str, u32)>,
) -> Result<Tokenizer> {
    let template = TemplateProcessing::builder()
        .try_single(single)
        .map_err(|e| anyhow!("{e}"))?
        .try_pair(pair)
        .map_err(|e| anyhow!("{e}"))?
        .special_tokens(specials)
        .build()
        .map_err(|e| anyhow!("cannot build the post-processor: {e}"))?;
    tokenizer.with_post_processor(Some(template));
    Ok(tokenizer)
}

/// Train a BPE tokenizer of `vocab_size` entries on `texts` with T5's conventions: the specials
/// of [`SPECIAL_TOKENS`], `</s>` appended to every encoded sequence.
pub fn train_tokenizer(texts: &[String], vocab_size: usize) -> Result<Tokenizer> {
    let tokenizer = train_bpe(texts, vocab_size, &SPECIAL_TOKENS)?;
    with_template(tokenizer, "$A </s>", "$A </s> $B </s>", vec![("</s>", 1)])
}

/// Train a BPE tokenizer for a decoder-only model of prompts and completions: the specials of
/// [`PROMPT_SPECIAL_TOKENS`], and `<sep>` appended to every encoded text, so that encoding an
/// input with special tokens (calm, or `tokenizer(text)` in transformers) gives the prompt,
/// after which the model writes the completion and `</s>`.
pub fn train_prompt_tokenizer(texts: &[String], vocab_size: usize) -> Result<Tokenizer> {
    let tokenizer = train_bpe(texts, vocab_size, &PROMPT_SPECIAL_TOKENS)?;
    with_template(
        tokenizer,
        "$A <sep>",
        "$A <sep> $B <sep>",
        vec![("<sep>", 3)],
    )
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

    #[test]
    fn prompt_tokenizer_ends_prompts_with_the_separator() {
        let t = train_prompt_tokenizer(&corpus(), 60).unwrap();
        assert_eq!(t.token_to_id("<sep>"), Some(3));
        assert_eq!(t.token_to_id("</s>"), Some(1));
        let prompt = t.encode("the cat sat", true).unwrap();
        assert_eq!(*prompt.get_ids().last().unwrap(), 3);
        let plain = t.encode("the cat sat", false).unwrap();
        assert_eq!(plain.get_ids(), &prompt.get_ids()[..prompt.len() - 1]);
        assert_eq!(t.decode(prompt.get_ids(), true).unwrap(), "the cat sat");
    }
}
