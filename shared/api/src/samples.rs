//! Reading the sample manifests under `manifests/samples/`.
//!
//! An invalid sample states the API server's answer in a header comment
//! `# expect: <text the error message contains>`; unit tests and the end-to-end validation test
//! both read it from here, so a sample and its expectation live in one file.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// One sample manifest.
#[derive(Clone, Debug)]
pub struct Sample {
    pub path: PathBuf,
    /// The object, as JSON.
    pub object: serde_json::Value,
    /// For invalid samples: text the API server's error must contain.
    pub expect: Option<String>,
}

impl Sample {
    /// `kind` of the object.
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    /// `metadata.name` of the object.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// The field path the expected error names (the text before the first `:`).
    pub fn expected_field(&self) -> Option<&str> {
        self.expect.as_deref().and_then(|e| e.split(':').next())
    }
}

#[derive(Debug, Error)]
pub enum SampleError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
}

/// The repository's `manifests/samples` directory.
pub fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/samples")
}

/// Every `*.yaml` sample directly in `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<Sample>, SampleError> {
    let read = |source| SampleError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

/// One sample file.
pub fn load(path: &Path) -> Result<Sample, SampleError> {
    let text = std::fs::read_to_string(path).map_err(|source| SampleError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let object = serde_saphyr::from_str(&text).map_err(|source| SampleError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let expect = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| l.strip_prefix("# expect:"))
        .map(|e| e.trim().to_string());
    Ok(Sample {
        path: path.to_path_buf(),
        object,
        expect,
    })
}
