//! AdamW (Loshchilov & Hutter, 2019) with decoupled weight decay, global-norm gradient clipping
//! and a warm-up + cosine learning-rate schedule. Its moments are plain named tensors, so a
//! checkpoint can save and restore them exactly.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// Learning rate at `step` (0-based): linear warm-up to `peak`, then cosine decay to 10% of it.
/// One training step: gradients of `loss`, the global norm clipped to `clip_norm`, an AdamW
/// update at `lr`. Returns the gradient norm before clipping.
pub fn clipped_step(optimizer: &mut AdamW, loss: &Tensor, lr: f64, clip_norm: f64) -> Result<f64> {
    let grads = loss.backward()?;
    let norm = optimizer.gradient_norm(&grads)?;
    let scale = if norm > clip_norm {
        clip_norm / norm
    } else {
        1.0
    };
    optimizer.update(&grads, lr, scale)?;
    Ok(norm)
}

pub fn learning_rate(step: usize, peak: f64, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let progress = ((step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64).min(1.0);
    peak * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
}

/// AdamW over named variables.
pub struct AdamW {
    config: AdamWConfig,
    vars: Vec<(String, Var)>,
    first: BTreeMap<String, Tensor>,
    second: BTreeMap<String, Tensor>,
    pub step: usize,
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        let mut first = BTreeMap::new();
        let mut second = BTreeMap::new();
        for (name, var) in &vars {
            first.insert(name.clone(), var.zeros_like()?);
            second.insert(name.clone(), var.zeros_like()?);
        }
        Ok(AdamW {
            config,
            vars,
            first,
            second,
            step: 0,
        })
    }

    /// Global L2 norm of the gradients (variables without a gradient count as zero).
    pub fn gradient_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut total = 0f64;
        for (_, var) in &self.vars {
            if let Some(grad) = grads.get(var.as_tensor()) {
                total += grad.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        Ok(total.sqrt())
    }

    /// One update with learning rate `lr`, gradients scaled by `scale` (for clipping).
    pub fn update(&mut self, grads: &GradStore, lr: f64, scale: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let correction1 = 1.0 - c.beta1.powi(t);
        let correction2 = 1.0 - c.beta2.powi(t);
        for (name, var) in &self.vars {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let grad = (grad * scale)?;
            let m = ((&self.first[name] * c.beta1)? + (&grad * (1.0 - c.beta1))?)?;
            let v = ((&self.second[name] * c.beta2)? + (grad.sqr()? * (1.0 - c.beta2))?)?;
            let step = ((&m / correction1)? / ((&v / correction2)?.sqrt()? + c.eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * c.weight_decay))?;
            var.set(&(decayed - (step * lr)?)?)?;
            self.first.insert(name.clone(), m);
            self.second.insert(name.clone(), v);
        }
        Ok(())
    }

    /// Moments as named tensors (`adam.m.NAME`, `adam.v.NAME`) for a checkpoint.
    pub fn state(&self) -> BTreeMap<String, Tensor> {
        let mut state = BTreeMap::new();
        for (name, tensor) in &self.first {
            state.insert(format!("adam.m.{name}"), tensor.clone());
        }
        for (name, tensor) in &self.second {
            state.insert(format!("adam.v.{name}"), tensor.clone());
        }
        state
    }

    /// Restore moments saved by [`AdamW::state`]; missing entries stay zero.
    pub fn restore(&mut self, state: &std::collections::HashMap<String, Tensor>, step: usize) {
        for (name, tensor) in state {
            if let Some(key) = name.strip_prefix("adam.m.") {
                self.first.insert(key.to_string(), tensor.clone());
            } else if let Some(key) = name.strip_prefix("adam.v.") {
                self.second.insert(key.to_string(), tensor.clone());
            }
        }
        self.step = step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_a_tenth() {
        assert!((learning_rate(0, 1e-3, 10, 100) - 1e-4).abs() < 1e-15);
        assert!((learning_rate(9, 1e-3, 10, 100) - 1e-3).abs() < 1e-15);
        assert!((learning_rate(100, 1e-3, 10, 100) - 1e-4).abs() < 1e-12);
        assert!(learning_rate(50, 1e-3, 10, 100) < 1e-3);
    }
}
