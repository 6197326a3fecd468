//! The confidence measures calm computes (CALM §3.5), by the names records and configs use.
//! Records from other tools may name measures of their own; these are the ones calm's decoder runs.

use serde::{Deserialize, Serialize};

/// A confidence measure c_t^i computed at decoder layer i for the token at position t.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Measure {
    /// Softmax response: top-1 minus top-2 probability of the exit head.
    SoftmaxDiff,
    /// Largest probability of the exit head.
    SoftmaxMax,
    /// Hidden-state saturation: cos(h_i, h_{i−1}) of raw states; first possible exit at layer 2.
    State,
    /// sigmoid of the early-exit classifier on the raw state.
    Classifier,
}

impl Measure {
    pub const ALL: [Measure; 4] = [
        Measure::SoftmaxDiff,
        Measure::SoftmaxMax,
        Measure::State,
        Measure::Classifier,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Measure::SoftmaxDiff => "softmax-diff",
            Measure::SoftmaxMax => "softmax-max",
            Measure::State => "state",
            Measure::Classifier => "classifier",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Measure::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether the measure needs the exit head's softmax at every evaluated layer.
    pub fn needs_softmax(self) -> bool {
        matches!(self, Measure::SoftmaxDiff | Measure::SoftmaxMax)
    }
}
