//! The command line: how many clusters, how many repeats, which parts and which tracing modes.

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use crate::mode::Mode;

/// Tracing overhead and convergence at scale of the multigres handlers, against the local
/// control plane (`make cluster-up`, or the one `make bench` starts).
///
/// Overhead: the same workload (clusters created, converged, scaled, converged, deleted) with
/// both handlers in every tracing mode at once, each mode with its own handler processes and
/// namespace; CPU, RSS and reconciles per handler, against tracing off in the same repeat.
/// Convergence: many clusters applied at once, timed until all are Healthy, then the same objects
/// written directly with no handler running (the floor).
#[derive(Debug, Parser)]
#[command(
    name = "bench",
    // A flag given twice takes its last value.
    args_override_self = true,
    after_help = "Prints a Markdown report and writes it to $BENCH_REPORT, or to \
                  bench/results/<date>.md when that is not set."
)]
pub struct Args {
    /// Clusters each tracing mode creates, scales and deletes in every overhead repeat.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub clusters: usize,

    /// Overhead repeats; the report gives the median and spread over them.
    #[arg(long, value_name = "R", default_value_t = 3)]
    pub repeats: usize,

    /// Clusters applied at once for convergence at scale (8 pods each; the part is skipped when
    /// the nodes cannot hold them).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub scale_clusters: usize,

    /// Skip the tracing overhead.
    #[arg(long)]
    pub skip_overhead: bool,

    /// Skip convergence at scale and its direct-write floor.
    #[arg(long)]
    pub skip_scale: bool,

    /// Tracing modes to run side by side, comma-separated; the first must be off, the baseline
    /// the others are compared with.
    #[arg(
        long,
        value_name = "MODE,...",
        value_enum,
        // Like every flag, a second --modes replaces the first rather than adding to it.
        action = clap::ArgAction::Set,
        value_delimiter = ',',
        default_value = "off,on,1%,on-plain,1%-plain"
    )]
    pub modes: Vec<Mode>,
}

impl Args {
    /// Parses and checks `argv` (the program name first); the error is clap's, with the usage.
    pub fn from_argv<I, T>(argv: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = Args::try_parse_from(argv)?;
        if args.modes.first() != Some(&Mode::Off) {
            return Err(Args::command().error(
                ErrorKind::ValueValidation,
                "--modes must start with off (the baseline the other modes are compared with)",
            ));
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        Args::from_argv(std::iter::once("bench").chain(argv.iter().copied()))
    }

    #[test]
    fn defaults() -> Result<(), clap::Error> {
        let a = parse(&[])?;
        assert_eq!((a.clusters, a.repeats, a.scale_clusters), (100, 3, 1000));
        assert!(!a.skip_overhead && !a.skip_scale);
        assert_eq!(
            a.modes,
            [
                Mode::Off,
                Mode::Full,
                Mode::OnePercent,
                Mode::FullPlain,
                Mode::OnePercentPlain
            ]
        );
        Ok(())
    }

    #[test]
    fn flags() -> Result<(), clap::Error> {
        let a = parse(&[
            "--clusters",
            "20",
            "--repeats",
            "1",
            "--scale-clusters",
            "300",
            "--skip-overhead",
            "--skip-scale",
            "--modes",
            "off,100%,on,1%,down,http,on-plain,1%-plain",
        ])?;
        assert_eq!((a.clusters, a.repeats, a.scale_clusters), (20, 1, 300));
        assert!(a.skip_overhead && a.skip_scale);
        assert_eq!(
            a.modes,
            [
                Mode::Off,
                Mode::Full,
                Mode::Full,
                Mode::OnePercent,
                Mode::BackendDown,
                Mode::FullHttp,
                Mode::FullPlain,
                Mode::OnePercentPlain
            ]
        );
        Ok(())
    }

    #[test]
    fn last_value_wins() -> Result<(), clap::Error> {
        let a = parse(&[
            "--clusters",
            "5",
            "--clusters",
            "7",
            "--modes",
            "off,on",
            "--modes",
            "off,http",
        ])?;
        assert_eq!(a.clusters, 7);
        assert_eq!(a.modes, [Mode::Off, Mode::FullHttp]);
        Ok(())
    }

    #[test]
    fn modes_start_with_off() {
        let err = parse(&["--modes", "on,off"]).err();
        assert_eq!(
            err.as_ref().map(clap::Error::kind),
            Some(ErrorKind::ValueValidation)
        );
        assert!(err.is_some_and(|e| e.to_string().contains("must start with off")));
    }

    #[test]
    fn rejects_unknown_modes_and_numbers() {
        for argv in [
            &["--modes", "off,sometimes"][..],
            &["--clusters", "many"],
            &["--repeats"],
            &["--verbose"],
        ] {
            assert!(parse(argv).is_err(), "{argv:?} accepted");
        }
    }
}
