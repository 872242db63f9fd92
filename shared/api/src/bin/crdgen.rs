//! Writes what the Rust types generate under `manifests/` (or the directory given as the first
//! argument): every CRD in `crds/`, one file each, with the kustomization listing them, and the
//! handlers' rules on the component kinds in `rbac/components.yaml`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use multigres_api::{crd, rbac};

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let manifests = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("manifests"));
    let dir = manifests.join("crds");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let crds = crd::all_crds();
    write(
        &dir.join(crd::CRD_KUSTOMIZATION_FILE),
        &crd::crd_kustomization(&crds),
    )?;
    for crd in crds {
        write(&dir.join(crd::crd_file_name(&crd)), &crd::crd_yaml(&crd)?)?;
    }
    let rbac_dir = manifests.join("rbac");
    std::fs::create_dir_all(&rbac_dir)
        .with_context(|| format!("creating {}", rbac_dir.display()))?;
    write(
        &rbac_dir.join(rbac::COMPONENT_RBAC_FILE),
        &rbac::component_rbac(),
    )
}
