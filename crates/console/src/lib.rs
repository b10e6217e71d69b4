//! The console's files as Vite builds them into `ui/dist`: embedded into release builds,
//! read from disk by debug builds. A checkout built without Node has none; `/ui` then
//! serves [`PLACEHOLDER`], a page that says how to build the console.

pub use rust_embed::EmbeddedFile;

#[derive(rust_embed::Embed)]
#[folder = "../../ui/dist/"]
#[allow_missing = true]
struct Bundle;

/// What `/ui` shows when the console was not built.
pub const PLACEHOLDER: &str = include_str!("placeholder.html");

/// The file at `path` (relative to `ui/dist`, `/`-separated), if the bundle has it. Paths
/// with empty, `.` or `..` segments, backslashes or NUL name nothing, whatever is on disk.
pub fn file(path: &str) -> Option<EmbeddedFile> {
    let plain = !path.is_empty()
        && !path.contains(['\\', '\0'])
        && path.split('/').all(|segment| !segment.is_empty() && segment != "." && segment != "..");
    if !plain {
        return None;
    }
    Bundle::get(path)
}

/// The page every console route without a file of its own answers with.
pub const INDEX: &str = "index.html";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unplain_paths_name_nothing() {
        for path in ["", "/", "/index.html", "../Cargo.toml", "a/../index.html", "./index.html", "a//b", "a\\b", "x\0"]
        {
            assert!(file(path).is_none(), "{path:?} named a file");
        }
    }

    #[test]
    fn the_placeholder_says_how_to_build() {
        assert!(PLACEHOLDER.contains("just ui"));
    }
}
