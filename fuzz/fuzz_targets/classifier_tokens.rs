//! Messages from the outside through the classifier: the tokenizer (mail-parser, the bounded
//! MIME walk, header decoding, HTML tags and links, words) and the model's score, learning and
//! unlearning; the same bytes as a spam report (its attached messages) and as a serialized model.
//! Invariants checked: nothing panics; the features are distinct, sorted and at most
//! `MAX_FEATURES`; the score is a probability; unlearning what was just learned restores the
//! model's bytes exactly; a model's bytes load back to the same bytes; arbitrary bytes either
//! load as a model (then re-serialise loadably) or are refused.
#![no_main]
use libfuzzer_sys::fuzz_target;
use moat::classifier::tokens::MAX_FEATURES;
use moat::classifier::{Label, Model, Settings};

fuzz_target!(|input: &[u8]| {
    // The same bytes as a spam report: bounded, and each attached message is a message.
    assert!(moat::classifier::reports::attached_messages(input).len() <= moat::classifier::reports::MAX_ATTACHED);
    assert_eq!(moat::classifier::content_digest(input).len(), 64);
    let mut model = Model::with_seed(Settings { table_bits: 10, ..Settings::default() }, 42);
    let features = model.tokenizer().features(input);
    assert!(features.len() <= MAX_FEATURES);
    assert!(features.hashes().windows(2).all(|w| w[0] < w[1]));
    let p = model.score(&features);
    assert!((0.0..=1.0).contains(&p), "{p}");
    model.learn(&features, Label::Ham);
    let before = model.to_bytes();
    model.learn(&features, Label::Spam);
    let p = model.score(&features);
    assert!((0.0..=1.0).contains(&p), "{p}");
    model.unlearn(&features, Label::Spam);
    assert_eq!(model.to_bytes(), before);
    let back = Model::from_bytes(&before).expect("a model's bytes load");
    assert_eq!(back.to_bytes(), before);
    if let Ok(loaded) = Model::from_bytes(input) {
        let again = loaded.to_bytes();
        assert!(Model::from_bytes(&again).is_ok());
    }
});
