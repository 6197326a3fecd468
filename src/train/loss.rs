//! The CALM training objective (Eq. 6): L = Σ_i ω_i·NLL_i over all decoder layers, with
//! ω_i = i / Σ_j j, every exit going through the shared final norm and LM head.

use candle_core::{DType, Result, Tensor, D};

/// ω_i = i / Σ_{j=1}^{L} j for i = 1..L.
pub fn calm_layer_weights(num_layers: usize) -> Vec<f64> {
    let total = (num_layers * (num_layers + 1) / 2) as f64;
    (1..=num_layers).map(|i| i as f64 / total).collect()
}

/// Mean negative log-likelihood of `targets` [B, T] under `logits` [B, T, V], over positions where
/// `mask` [B, T] is 1 (padding excluded). Composed from differentiable ops.
pub fn masked_nll(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = log_probs
        .gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?
        .squeeze(D::Minus1)?;
    let mask = mask.to_dtype(DType::F32)?;
    let total = (picked * &mask)?.sum_all()?;
    let count = mask.sum_all()?;
    total.neg()?.div(&count)
}

/// The weighted CALM loss and the per-layer NLLs (for logging).
pub fn calm_loss(
    layer_logits: &[Tensor],
    targets: &Tensor,
    mask: &Tensor,
) -> Result<(Tensor, Vec<Tensor>)> {
    let weights = calm_layer_weights(layer_logits.len());
    let mut per_layer = Vec::with_capacity(layer_logits.len());
    let mut total: Option<Tensor> = None;
    for (logits, weight) in layer_logits.iter().zip(weights) {
        let nll = masked_nll(logits, targets, mask)?;
        let term = (&nll * weight)?;
        total = Some(match total {
            Some(sum) => (sum + term)?,
            None => term,
        });
        per_layer.push(nll);
    }
    match total {
        Some(total) => Ok((total, per_layer)),
        None => candle_core::bail!("no decoder layers"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn weights_favour_higher_layers_and_sum_to_one() {
        let w = calm_layer_weights(8);
        assert_eq!(w.len(), 8);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert!((w[0] - 1.0 / 36.0).abs() < 1e-15 && (w[7] - 8.0 / 36.0).abs() < 1e-15);
    }

    #[test]
    fn weighted_loss_matches_a_hand_computed_value() {
        // Two layers, one sequence of two positions (the second is padding), vocab 2.
        // Layer 1 logits at t=0: [0, ln 3] → p(target 1) = 3/4 → NLL = ln(4/3).
        // Layer 2 logits at t=0: [0, 0]    → p = 1/2            → NLL = ln 2.
        // ω = (1/3, 2/3): L = ln(4/3)/3 + 2·ln(2)/3. Padding logits are arbitrary.
        let device = Device::Cpu;
        let l1 = Tensor::new(&[[[0f32, 3f32.ln()], [9.0, -9.0]]], &device).unwrap();
        let l2 = Tensor::new(&[[[0f32, 0.0], [-9.0, 9.0]]], &device).unwrap();
        let targets = Tensor::new(&[[1u32, 0]], &device).unwrap();
        let mask = Tensor::new(&[[1u32, 0]], &device).unwrap();
        let (loss, per_layer) = calm_loss(&[l1, l2], &targets, &mask).unwrap();
        let expected = (4.0f64 / 3.0).ln() / 3.0 + 2.0 * 2f64.ln() / 3.0;
        let got = loss.to_scalar::<f32>().unwrap() as f64;
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
        let nll1 = per_layer[0].to_scalar::<f32>().unwrap() as f64;
        assert!((nll1 - (4.0f64 / 3.0).ln()).abs() < 1e-6);
    }
}
