//! `contract new`: a contract's folder from the templates of `cli/templates/contract/`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Lang;

#[derive(Debug, clap::Args)]
pub struct NewFlags {
    /// The contract's name (lower case letters, digits and _, starting with a letter): its
    /// `contractID`, and its folder's name.
    name: String,
    #[arg(long, value_enum)]
    lang: Lang,
    /// Where its folder goes.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The Rust SDK (`checker-sdk/rust` of a Shardspace checkout) the crate depends on; by
    /// default the one this binary was built from.
    #[arg(long)]
    sdk: Option<PathBuf>,
}

/// The files of each language's template: where each goes (`NAME` replaced), and its text.
const PYTHON: &[(&str, &str)] = &[
    ("NAME.py", include_str!("../../templates/contract/python/contract.py")),
    ("test_NAME.py", include_str!("../../templates/contract/python/test_contract.py")),
    ("README.md", include_str!("../../templates/contract/python/README.md")),
];
const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../templates/contract/rust/Cargo.toml")),
    ("src/lib.rs", include_str!("../../templates/contract/rust/src/lib.rs")),
    ("src/main.rs", include_str!("../../templates/contract/rust/src/main.rs")),
    ("tests/contract.rs", include_str!("../../templates/contract/rust/tests/contract.rs")),
    ("README.md", include_str!("../../templates/contract/rust/README.md")),
    (".gitignore", "/target\n"),
];

/// Writes the contract's folder, `dir/name`; its path. Nothing is overwritten.
pub fn new(flags: &NewFlags) -> anyhow::Result<PathBuf> {
    let name = flags.name.as_str();
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    anyhow::ensure!(
        valid && shardspace_core::is_name(name),
        "{name:?} is not a contract name for a new contract: lower case letters, digits and _, starting with a \
         letter (it names a Python module and a Rust crate too)"
    );
    let folder = flags.dir.join(name);
    anyhow::ensure!(!folder.exists(), "{} exists already: choose another name or --dir", folder.display());
    let (files, sdk) = match flags.lang {
        Lang::Python => (PYTHON, PathBuf::new()),
        Lang::Rust => (RUST, sdk_path(flags.sdk.as_deref())?),
    };
    // As the content of a TOML string.
    let sdk_in_toml = sdk.to_string_lossy().replace('\\', "\\\\").replace('"', "\\\"");
    for (path, text) in files {
        let path = folder.join(path.replace("NAME", name));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = text.replace("__NAME__", name).replace("__SDK__", &sdk_in_toml);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // The versions the SDK is built and tested with: its checkout's lock file, which cargo
    // trims to what the crate uses (and a build shares what the checkout compiled).
    let lock = sdk.join("../../Cargo.lock");
    if flags.lang == Lang::Rust && lock.is_file() {
        std::fs::copy(&lock, folder.join("Cargo.lock")).with_context(|| format!("cannot copy {}", lock.display()))?;
    }
    Ok(folder)
}

/// The Rust SDK's folder.
fn sdk_path(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../checker-sdk/rust");
    let sdk = given.map_or(built_from, Path::to_path_buf);
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the Rust SDK is not at {}: give the checker-sdk/rust folder of a Shardspace checkout with --sdk",
            sdk.display()
        )
    })?;
    anyhow::ensure!(sdk.join("Cargo.toml").is_file(), "{} holds no Cargo.toml: not the Rust SDK", sdk.display());
    Ok(sdk)
}
