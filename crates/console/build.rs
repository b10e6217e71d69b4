//! The bundle's file names carry content hashes, so new files appear on every UI build:
//! watching the folder (not just the files embedded last time) rebuilds the crate then.

fn main() {
    println!("cargo:rerun-if-changed=../../ui/dist");
}
