//! Writes the CRDs of every multigres kind to `manifests/crds/` (or the directory given as the
//! first argument), one file per CRD, and the kustomization listing them.

use std::path::PathBuf;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("manifests/crds"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let crds = multigres_api::crd::all_crds();
    let kustomization = dir.join(multigres_api::crd::CRD_KUSTOMIZATION_FILE);
    std::fs::write(&kustomization, multigres_api::crd::crd_kustomization(&crds))
        .with_context(|| format!("writing {}", kustomization.display()))?;
    for crd in crds {
        let path = dir.join(multigres_api::crd::crd_file_name(&crd));
        let yaml = multigres_api::crd::crd_yaml(&crd)?;
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
