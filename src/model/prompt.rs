//! Prompt formats of decoder-only models: a model's ChatML chat template as a `{input}`
//! template (one user turn and the assistant's generation prompt).

use anyhow::{bail, Result};

const START: &str = "<|im_start|>";
const END: &str = "<|im_end|>";

/// The default system message a Jinja chat template writes when the conversation has none
/// (a string literal `<|im_start|>system\n…<|im_end|>` in the template source).
fn default_system_message(template: &str) -> Option<String> {
    for newline in ["\\n", "\n"] {
        let opening = format!("{START}system{newline}");
        let Some(at) = template.find(&opening) else {
            continue;
        };
        let rest = &template[at + opening.len()..];
        let end = rest.find(END)?;
        let message = &rest[..end];
        // A literal, not an expression such as `{{ message['content'] }}`.
        if message.contains("{{")
            || message.contains("{%")
            || message.contains('\'') && message.contains('+')
        {
            return None;
        }
        return Some(message.replace("\\n", "\n"));
    }
    None
}

/// The `{input}` template of one user turn in a ChatML chat template.
pub fn chatml_template(template: &str) -> Result<String> {
    if !template.contains(START) || !template.contains(END) {
        bail!("not in ChatML form (no {START}/{END} markers); give a --prompt-template with {{input}}");
    }
    let mut prompt = String::new();
    if let Some(system) = default_system_message(template) {
        prompt.push_str(&format!("{START}system\n{system}{END}\n"));
    }
    prompt.push_str(&format!("{START}user\n{{input}}{END}\n{START}assistant\n"));
    Ok(prompt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_with_a_default_system_message() {
        let template = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
        assert_eq!(
            chatml_template(template).unwrap(),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn chatml_without_system_and_other_formats() {
        let template = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}";
        assert_eq!(
            chatml_template(template).unwrap(),
            "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(chatml_template("[INST] {{ m }} [/INST]").is_err());
        // Both markers are needed.
        assert!(chatml_template("{{'<|im_start|>' + m['role']}}").is_err());
        assert!(chatml_template("{{ m['content'] + '<|im_end|>' }}").is_err());
    }

    #[test]
    fn a_system_turn_from_the_conversation_is_not_a_default() {
        // The system text is an expression (the caller's message), not a literal default.
        for template in [
            "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>' }}",
            "{{ '<|im_start|>system\\n{{ system }}<|im_end|>' }}",
            "{{ '<|im_start|>system\\n{% if x %}a{% endif %}<|im_end|>' }}",
        ] {
            assert_eq!(
                chatml_template(template).unwrap(),
                "<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n",
                "{template}"
            );
        }
        // A literal with a quote but no concatenation is still a literal default.
        let literal = "{{ '<|im_start|>system\\nYou're kind<|im_end|>' }}";
        assert!(chatml_template(literal)
            .unwrap()
            .starts_with("<|im_start|>system\nYou're kind<|im_end|>\n"));
    }
}
