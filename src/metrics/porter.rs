//! The Porter stemmer exactly as rouge-score 0.1.2 uses it.
//!
//! rouge-score's `DefaultTokenizer(use_stemmer=True)` builds `nltk.stem.porter.PorterStemmer()`
//! with no arguments, i.e. **`mode=NLTK_EXTENSIONS`** (not `ORIGINAL_ALGORITHM`, not
//! `MARTIN_EXTENSIONS`), and calls `stem(token)` on tokens longer than 3 characters. This module
//! is a line-by-line port of `nltk/stem/porter.py` (nltk 3.10.4) in that mode, including its
//! departures from Porter (1980):
//!
//! - a table of irregular forms (`skies`→`sky`, `dying`→`die`, `news`→`news`, `succeed`, …);
//! - words of at most 2 characters are returned unchanged;
//! - step 1a: `ies`→`ie` for 4-letter words (`dies`→`die`); step 1b: `ied`→`ie`/`i`;
//! - step 1b's `*o` condition also accepts a 2-letter vowel–consonant stem;
//! - step 1c: `y`→`i` only after a consonant that is not the first letter (`enjoy` stays);
//! - step 2: `alli`→`al` is tried first and step 2 re-run; `bli`→`ble` (not `abli`→`able`);
//!   extra rules `fulli`→`ful` and `logi`→`log` (its measure taken on the word less `ogi`);
//! - when a suffix matches but its condition fails, no later rule of that step is tried.
//!
//! The port works on any `&str` (lowercased with Python's `str.lower()` first, as nltk does);
//! vowels are `a e i o u`, `y` is a vowel after a consonant, every other character (digits,
//! non-ASCII letters) is a consonant.

use super::pyunicode::py_lower;

/// nltk's `irregular_forms` table (NLTK_EXTENSIONS mode), as (form, stem).
const IRREGULAR: &[(&str, &str)] = &[
    ("sky", "sky"),
    ("skies", "sky"),
    ("dying", "die"),
    ("lying", "lie"),
    ("tying", "tie"),
    ("news", "news"),
    ("innings", "inning"),
    ("inning", "inning"),
    ("outings", "outing"),
    ("outing", "outing"),
    ("cannings", "canning"),
    ("canning", "canning"),
    ("howe", "howe"),
    ("proceed", "proceed"),
    ("exceed", "exceed"),
    ("succeed", "succeed"),
];

/// Stems one word like `nltk.stem.porter.PorterStemmer().stem(word)` (nltk 3.10.4,
/// `NLTK_EXTENSIONS` mode, `to_lowercase=True`).
pub fn stem(word: &str) -> String {
    let lowered = py_lower(word);
    if let Some(&(_, irregular)) = IRREGULAR.iter().find(|(form, _)| *form == lowered) {
        return irregular.to_string();
    }
    // nltk tests the length of the word as given, before lowercasing.
    if word.chars().count() <= 2 {
        return lowered;
    }
    let mut w: Vec<char> = lowered.chars().collect();
    w = step1a(w);
    w = step1b(w);
    w = step1c(w);
    w = step2(w);
    w = step3(w);
    w = step4(w);
    w = step5a(w);
    w = step5b(w);
    w.into_iter().collect()
}

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')
}

/// `_is_consonant(word, i)`: `y` is a consonant at the start or after a vowel.
fn is_consonant(w: &[char], mut i: usize) -> bool {
    if is_vowel(w[i]) {
        return false;
    }
    if w[i] != 'y' {
        return true;
    }
    let mut negate = false;
    while i > 0 && w[i] == 'y' {
        negate = !negate;
        i -= 1;
    }
    is_vowel(w[i]) == negate
}

/// Consonant flags for every position (`_consonant_flags`).
fn consonant_flags(w: &[char]) -> Vec<bool> {
    let mut flags: Vec<bool> = Vec::with_capacity(w.len());
    for (i, &c) in w.iter().enumerate() {
        let flag = if is_vowel(c) {
            false
        } else if c == 'y' {
            i == 0 || !flags[i - 1]
        } else {
            true
        };
        flags.push(flag);
    }
    flags
}

/// The measure m of `[C](VC){m}[V]`: the number of vowel→consonant transitions.
fn measure(w: &[char]) -> usize {
    consonant_flags(w)
        .windows(2)
        .filter(|pair| !pair[0] && pair[1])
        .count()
}

fn contains_vowel(w: &[char]) -> bool {
    consonant_flags(w).iter().any(|&consonant| !consonant)
}

/// `*d`: ends with a double consonant.
fn ends_double_consonant(w: &[char]) -> bool {
    let n = w.len();
    n >= 2 && w[n - 1] == w[n - 2] && is_consonant(w, n - 1)
}

/// `*o`: ends consonant–vowel–consonant with the last not `w`, `x` or `y`; NLTK also accepts a
/// two-letter vowel–consonant word.
fn ends_cvc(w: &[char]) -> bool {
    let n = w.len();
    (n >= 3
        && is_consonant(w, n - 3)
        && !is_consonant(w, n - 2)
        && is_consonant(w, n - 1)
        && !matches!(w[n - 1], 'w' | 'x' | 'y'))
        || (n == 2 && !is_consonant(w, 0) && is_consonant(w, 1))
}

fn ends_with(w: &[char], suffix: &str) -> bool {
    let n = suffix.chars().count();
    w.len() >= n && w[w.len() - n..].iter().copied().eq(suffix.chars())
}

/// `word` less its last `n` characters, plus `replacement`.
fn replace_tail(w: &[char], n: usize, replacement: &str) -> Vec<char> {
    let mut out = w[..w.len() - n].to_vec();
    out.extend(replacement.chars());
    out
}

fn positive_measure(stem: &[char]) -> bool {
    measure(stem) > 0
}

fn measure_gt_1(stem: &[char]) -> bool {
    measure(stem) > 1
}

type Condition<'a> = &'a dyn Fn(&[char]) -> bool;

/// `_apply_rule_list` for plain suffix rules: the first rule whose suffix matches decides; if its
/// condition fails the word is returned unchanged.
fn apply_rules(w: Vec<char>, rules: &[(&str, &str, Condition)]) -> Vec<char> {
    for &(suffix, replacement, condition) in rules {
        if ends_with(&w, suffix) {
            let n = suffix.chars().count();
            let stem = &w[..w.len() - n];
            return if condition(stem) {
                replace_tail(&w, n, replacement)
            } else {
                w
            };
        }
    }
    w
}

fn step1a(w: Vec<char>) -> Vec<char> {
    if ends_with(&w, "ies") && w.len() == 4 {
        return replace_tail(&w, 3, "ie");
    }
    for (suffix, replacement) in [("sses", "ss"), ("ies", "i"), ("ss", "ss"), ("s", "")] {
        if ends_with(&w, suffix) {
            return replace_tail(&w, suffix.len(), replacement);
        }
    }
    w
}

fn step1b(w: Vec<char>) -> Vec<char> {
    if ends_with(&w, "ied") {
        return replace_tail(&w, 3, if w.len() == 4 { "ie" } else { "i" });
    }
    if ends_with(&w, "eed") {
        let stem = &w[..w.len() - 3];
        return if measure(stem) > 0 {
            replace_tail(&w, 3, "ee")
        } else {
            w
        };
    }
    let mut intermediate = None;
    for suffix in ["ed", "ing"] {
        if ends_with(&w, suffix) {
            let stem = &w[..w.len() - suffix.len()];
            if contains_vowel(stem) {
                intermediate = Some(stem.to_vec());
                break;
            }
        }
    }
    let Some(stem) = intermediate else {
        return w;
    };
    for (suffix, replacement) in [("at", "ate"), ("bl", "ble"), ("iz", "ize")] {
        if ends_with(&stem, suffix) {
            return replace_tail(&stem, suffix.len(), replacement);
        }
    }
    if ends_double_consonant(&stem) {
        let last = stem[stem.len() - 1];
        return if !matches!(last, 'l' | 's' | 'z') {
            stem[..stem.len() - 1].to_vec()
        } else {
            stem
        };
    }
    if ends_with(&stem, "*d") {
        // nltk's rule table spells the double-consonant rule as the suffix "*d", so a stem that
        // literally ends in "*d" loses its '*' (only reachable from non-alphanumeric input).
        return replace_tail(&stem, 2, "d");
    }
    if measure(&stem) == 1 && ends_cvc(&stem) {
        let mut out = stem;
        out.push('e');
        return out;
    }
    stem
}

fn step1c(w: Vec<char>) -> Vec<char> {
    let condition = |stem: &[char]| stem.len() > 1 && is_consonant(stem, stem.len() - 1);
    apply_rules(w, &[("y", "i", &condition)])
}

fn step2(w: Vec<char>) -> Vec<char> {
    if ends_with(&w, "alli") && positive_measure(&w[..w.len() - 4]) {
        return step2(replace_tail(&w, 4, "al"));
    }
    // The `logi` rule measures the word less `ogi` (the `l` stays with the stem).
    let logi_stem: Vec<char> = w[..w.len().saturating_sub(3)].to_vec();
    let logi = move |_: &[char]| positive_measure(&logi_stem);
    let m: Condition = &positive_measure;
    apply_rules(
        w,
        &[
            ("ational", "ate", m),
            ("tional", "tion", m),
            ("enci", "ence", m),
            ("anci", "ance", m),
            ("izer", "ize", m),
            ("bli", "ble", m),
            ("alli", "al", m),
            ("entli", "ent", m),
            ("eli", "e", m),
            ("ousli", "ous", m),
            ("ization", "ize", m),
            ("ation", "ate", m),
            ("ator", "ate", m),
            ("alism", "al", m),
            ("iveness", "ive", m),
            ("fulness", "ful", m),
            ("ousness", "ous", m),
            ("aliti", "al", m),
            ("iviti", "ive", m),
            ("biliti", "ble", m),
            ("fulli", "ful", m),
            ("logi", "log", &logi),
        ],
    )
}

fn step3(w: Vec<char>) -> Vec<char> {
    let m: Condition = &positive_measure;
    apply_rules(
        w,
        &[
            ("icate", "ic", m),
            ("ative", "", m),
            ("alize", "al", m),
            ("iciti", "ic", m),
            ("ical", "ic", m),
            ("ful", "", m),
            ("ness", "", m),
        ],
    )
}

fn step4(w: Vec<char>) -> Vec<char> {
    let m: Condition = &measure_gt_1;
    let ion = |stem: &[char]| measure(stem) > 1 && matches!(stem.last(), Some('s' | 't'));
    apply_rules(
        w,
        &[
            ("al", "", m),
            ("ance", "", m),
            ("ence", "", m),
            ("er", "", m),
            ("ic", "", m),
            ("able", "", m),
            ("ible", "", m),
            ("ant", "", m),
            ("ement", "", m),
            ("ment", "", m),
            ("ent", "", m),
            ("ion", "", &ion),
            ("ou", "", m),
            ("ism", "", m),
            ("ate", "", m),
            ("iti", "", m),
            ("ous", "", m),
            ("ive", "", m),
            ("ize", "", m),
        ],
    )
}

fn step5a(w: Vec<char>) -> Vec<char> {
    if ends_with(&w, "e") {
        let stem = &w[..w.len() - 1];
        let m = measure(stem);
        if m > 1 || (m == 1 && !ends_cvc(stem)) {
            return stem.to_vec();
        }
    }
    w
}

fn step5b(w: Vec<char>) -> Vec<char> {
    if ends_with(&w, "ll") && measure(&w[..w.len() - 1]) > 1 {
        return w[..w.len() - 1].to_vec();
    }
    w
}

#[cfg(test)]
mod tests {
    use super::stem;

    #[test]
    fn paper_and_nltk_examples() {
        let cases = [
            ("caresses", "caress"),
            ("ponies", "poni"),
            ("ties", "tie"),
            ("dies", "die"),
            ("cats", "cat"),
            ("feed", "feed"),
            ("agreed", "agre"),
            ("plastered", "plaster"),
            ("bled", "bled"),
            ("motoring", "motor"),
            ("sing", "sing"),
            ("conflated", "conflat"),
            ("troubled", "troubl"),
            ("sized", "size"),
            ("hopping", "hop"),
            ("falling", "fall"),
            ("hissing", "hiss"),
            ("filing", "file"),
            ("happy", "happi"),
            ("enjoy", "enjoy"),
            ("relational", "relat"),
            ("generalization", "gener"),
            ("running", "run"),
            ("runner", "runner"),
            ("runs", "run"),
            ("skies", "sky"),
            ("dying", "die"),
            ("spied", "spi"),
            ("died", "die"),
            ("controlling", "control"),
            ("archaeology", "archaeolog"),
            ("geology", "geolog"),
            ("hopefully", "hope"),
            ("y", "y"),
            ("yyyy", "yyyi"),
            ("ab*ded", "abd"),
            ("Sitting", "sit"),
        ];
        for (word, want) in cases {
            assert_eq!(stem(word), want, "{word}");
        }
    }
}
