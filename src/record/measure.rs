//! The confidence measures calm computes (CALM §3.5), by the names records and configs use.
//! Records from other tools may name measures of their own; these are the ones calm's decoder runs.

crate::named_enum! {
    /// A confidence measure c_t^i computed at decoder layer i for the token at position t.
    pub enum Measure ("measure") {
        /// Softmax response: top-1 minus top-2 probability of the exit head.
        SoftmaxDiff => "softmax-diff",
        /// Largest probability of the exit head.
        SoftmaxMax => "softmax-max",
        /// Hidden-state saturation: cos(h_i, h_{i−1}) of raw states; first possible exit at layer 2.
        State => "state",
        /// sigmoid of the early-exit classifier on the raw state.
        Classifier => "classifier",
    }
}

impl Measure {
    /// Whether the measure needs the exit head's softmax at every evaluated layer.
    pub fn needs_softmax(self) -> bool {
        matches!(self, Measure::SoftmaxDiff | Measure::SoftmaxMax)
    }
}
