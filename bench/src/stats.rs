//! Median and spread over the repeats, as the report prints them.

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// `median (min–max)` of `v`.
pub fn summary(v: &[f64], digits: usize) -> String {
    let (min, max) = min_max(v);
    format!(
        "{:.digits$} ({min:.digits$}–{max:.digits$})",
        median(v.to_vec())
    )
}

/// `+median unit (+min … +max)` of differences `v`.
pub fn difference(v: &[f64], unit: &str) -> String {
    let (min, max) = min_max(v);
    format!("{:+.1}{unit} ({min:+.1} … {max:+.1})", median(v.to_vec()))
}

pub fn min_max(v: &[f64]) -> (f64, f64) {
    let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_length_is_the_middle() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![5.0]), 5.0);
    }

    #[test]
    fn median_of_even_length_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![-1.0, 1.0]), 0.0);
    }

    #[test]
    fn median_of_nothing_is_zero() {
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn min_max_is_the_spread() {
        assert_eq!(min_max(&[2.0, -3.5, 7.25, 0.0]), (-3.5, 7.25));
        assert_eq!(min_max(&[1.0]), (1.0, 1.0));
    }

    #[test]
    fn summary_is_median_and_spread() {
        assert_eq!(summary(&[1.234, 1.0, 2.0], 2), "1.23 (1.00–2.00)");
        assert_eq!(summary(&[10.0, 20.0], 0), "15 (10–20)");
    }

    #[test]
    fn difference_is_signed_with_unit() {
        assert_eq!(difference(&[2.04, -1.0, 3.0], "%"), "+2.0% (-1.0 … +3.0)");
        assert_eq!(difference(&[0.5], " MiB"), "+0.5 MiB (+0.5 … +0.5)");
    }
}
