//! Writes the CRDs of every multigres kind to `manifests/crds/` (or the directory given as the
//! first argument), one file per CRD.

use std::path::PathBuf;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("manifests/crds"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for crd in shared::crd::all_crds() {
        let path = dir.join(shared::crd::crd_file_name(&crd));
        let yaml = shared::crd::crd_yaml(&crd)?;
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
