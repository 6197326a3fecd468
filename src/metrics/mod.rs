//! Text metrics for consistency losses and reports: ROUGE (rouge-score conventions), sentence
//! BLEU and chrF (sacrebleu defaults), SQuAD token F1 and exact match.
