//! Image references as Skaffold reports them, split into the parts that become
//! labels and span attributes.
//!
//! A file sync names the image by the tag Skaffold built (`sync/sync.go`:
//! `Item{Image: tag}`): `name:tag`, `name:tag@sha256:…` or `name@sha256:…`, in v1
//! `FileSyncEvent.image` and in the v2 `Syncing N files for IMAGE` line alike. A new
//! tag per rebuild would make a new series per build, so the `image` label (and a
//! span's `container.image.name` and name) is the image **name**: the reference
//! without tag and digest, registry and path kept as written (`host:port/` included,
//! no `docker.io/library/` added, case kept). The tag and digest go on spans as
//! `container.image.tags` and `container.image.repo_digests`.
//!
//! Artifact names (`artifact` label, build spans) need none of this: Skaffold rejects
//! an artifact image with a tag or a digest (`schema/validation/validation.go`).
//!
//! Structural, never validating: odd input is split the same way and never makes an
//! empty name (a reference that is nothing but a tag or a digest stays whole).

/// A reference split into name, tag and digest (borrowed from the input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageRef<'a> {
    /// Registry and repository path: `gcr.io/p/web`, `localhost:5000/web`, `web`.
    pub name: &'a str,
    /// The tag after the last `:` of the last path component, if any.
    pub tag: Option<&'a str>,
    /// `algorithm:hex` after the `@`, if any.
    pub digest: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    /// Splits `reference`. `name:tag@digest` per the distribution reference grammar: a
    /// name never contains `@`, and a `:` after the last `/` starts the tag (a `:`
    /// before it belongs to a `host:port` registry). A bare `host:5000` reads as name
    /// `host` with tag `5000`, as Docker reads it.
    pub fn parse(reference: &'a str) -> Self {
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest).filter(|d| !d.is_empty())),
            None => (reference, None),
        };
        let last_component = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_component..].rfind(':') {
            Some(i) => {
                let at = last_component + i;
                (&rest[..at], Some(&rest[at + 1..]).filter(|t| !t.is_empty()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            // Only a tag or a digest: keep the reference whole rather than invent a
            // name (or merge unrelated oddities under "").
            return Self {
                name: reference,
                tag: None,
                digest: None,
            };
        }
        Self { name, tag, digest }
    }

    /// `name@digest`, the form of `container.image.repo_digests`, when there is a
    /// digest.
    pub fn repo_digest(&self) -> Option<String> {
        self.digest.map(|d| format!("{}@{d}", self.name))
    }
}

/// The image name of `reference` (see [`ImageRef::parse`]).
pub fn name(reference: &str) -> &str {
    ImageRef::parse(reference).name
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3c03bbaf0830afb79d586c5a0d5ce7510a027585fb0cbc88db9bd14bfbad139";

    fn parts(r: &str) -> (&str, Option<&str>, Option<&str>) {
        let i = ImageRef::parse(r);
        (i.name, i.tag, i.digest)
    }

    #[test]
    fn splits_every_form_skaffold_builds() {
        // What Skaffold's sync items carry: the built tag, with the digest once pushed.
        assert_eq!(parts("web"), ("web", None, None));
        assert_eq!(parts("web:v1"), ("web", Some("v1"), None));
        assert_eq!(
            parts(&format!("web:v1@{DIGEST}")),
            ("web", Some("v1"), Some(DIGEST))
        );
        assert_eq!(parts(&format!("web@{DIGEST}")), ("web", None, Some(DIGEST)));
        // The tag Skaffold printed in examples/lifecycle-hooks/README.md (v1.29).
        assert_eq!(
            name("hooks-example:e3c03bbaf0830afb79d586c5a0d5ce7510a027585fb0cbc88db9bd14bfbad139"),
            "hooks-example"
        );
        // Registries and paths are kept, with or without a port.
        assert_eq!(
            parts(&format!("gcr.io/my-project/team/web:v1@{DIGEST}")),
            ("gcr.io/my-project/team/web", Some("v1"), Some(DIGEST))
        );
        assert_eq!(
            parts("localhost:5000/web"),
            ("localhost:5000/web", None, None)
        );
        assert_eq!(
            parts(&format!("localhost:5000/web:dirty-abc@{DIGEST}")),
            ("localhost:5000/web", Some("dirty-abc"), Some(DIGEST))
        );
        assert_eq!(
            parts("[::1]:5000/ns/web:v1"),
            ("[::1]:5000/ns/web", Some("v1"), None)
        );
        assert_eq!(
            parts(&format!("localhost:5000/web@{DIGEST}")),
            ("localhost:5000/web", None, Some(DIGEST))
        );
        // Docker's own reading of a bare host:port.
        assert_eq!(parts("registry:5000"), ("registry", Some("5000"), None));
    }

    #[test]
    fn odd_input_is_split_safely_and_never_yields_an_empty_name() {
        // Case is kept (Docker would reject uppercase; the label shows what was sent).
        assert_eq!(parts("Gcr.IO/Web:V1"), ("Gcr.IO/Web", Some("V1"), None));
        // Empty parts are no parts.
        assert_eq!(parts("web:"), ("web", None, None));
        assert_eq!(parts("web:v1@"), ("web", Some("v1"), None));
        // Nothing but a tag or a digest: kept whole.
        assert_eq!(parts(":v1"), (":v1", None, None));
        assert_eq!(parts("@sha256:abc"), ("@sha256:abc", None, None));
        assert_eq!(parts(""), ("", None, None));
        // Several `@`: the name ends at the first.
        assert_eq!(parts("a@b@c"), ("a", None, Some("b@c")));
        // Multi-byte characters around the separators.
        assert_eq!(parts("wéb/ïmage:tåg"), ("wéb/ïmage", Some("tåg"), None));
        assert_eq!(parts("/web:v1"), ("/web", Some("v1"), None));
        assert_eq!(parts("web/"), ("web/", None, None));
    }

    #[test]
    fn repo_digest_is_name_at_digest() {
        assert_eq!(
            ImageRef::parse(&format!("localhost:5000/web:v1@{DIGEST}")).repo_digest(),
            Some(format!("localhost:5000/web@{DIGEST}"))
        );
        assert_eq!(ImageRef::parse("web:v1").repo_digest(), None);
    }
}
