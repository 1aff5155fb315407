//! Rebuilds the crate when a migration is added or edited: they are
//! embedded at compile time (`embed_migrations!`), and cargo does not
//! watch that directory by itself.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
