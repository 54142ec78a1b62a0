//! Image references: `ImageRef::parse`, `Digest::parse` and `same_repository` never panic, and a
//! parsed reference is consistent with itself.
#![no_main]

use binauthz::image::{Digest, ImageRef, same_repository};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Digest::parse(text);
    let Ok(image) = ImageRef::parse(text) else {
        assert!(
            !same_repository(text, text),
            "an invalid name equals itself: {text:?}"
        );
        return;
    };
    assert_eq!(image.as_written(), text);
    assert_eq!(
        format!("{}/{}", image.registry(), image.repository()),
        image.name(),
        "{text:?}"
    );
    assert!(
        same_repository(text, image.name()),
        "{text:?} vs {}",
        image.name()
    );
    if let Some(tag) = image.tag() {
        assert!(text.contains(tag));
    }
    if let Some(digest) = image.digest() {
        assert_eq!(Digest::parse(digest.as_str()).as_ref(), Ok(digest));
    }
    // The normalised name is itself a reference that normalises to the same name.
    let again = ImageRef::parse(image.name());
    assert_eq!(
        again.as_ref().map(ImageRef::name),
        Ok(image.name()),
        "{text:?}"
    );
});
