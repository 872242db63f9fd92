//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`), parsed to an exact value so two
//! spellings of one amount compare equal and sizes can be checked for sign.

/// An exact quantity: `mantissa × 10^exponent`, normalised so equal amounts are equal values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    mantissa: i128,
    exponent: i32,
}

impl Quantity {
    pub fn is_positive(self) -> bool {
        self.mantissa > 0
    }

    /// The amount when it is a whole number (`1500m` is not), `None` otherwise or on overflow.
    pub fn bytes(self) -> Option<i128> {
        // Normalised: a fraction leaves a negative exponent, since the mantissa has no
        // trailing zeros.
        if self.exponent < 0 {
            return None;
        }
        self.mantissa
            .checked_mul(10_i128.checked_pow(self.exponent.unsigned_abs())?)
    }

    /// The whole part of the amount (`3k` → 3000, `1500m` → 1), for counts such as a node's
    /// `pods` allocatable, which the API server may write in either form. `None` if it overflows.
    pub fn whole(self) -> Option<i128> {
        let power = 10_i128.checked_pow(self.exponent.unsigned_abs())?;
        if self.exponent >= 0 {
            self.mantissa.checked_mul(power)
        } else {
            Some(self.mantissa / power)
        }
    }
}

/// Smallest storage size a volume may ask for: less cannot hold a PostgreSQL data directory.
pub const MIN_STORAGE: &str = "1Mi";
/// Largest storage size a volume may ask for: more is beyond any real disk.
pub const MAX_STORAGE: &str = "1Pi";

/// Whether `size` is a storage size a claim may ask for: a whole number of bytes from
/// [`MIN_STORAGE`] to [`MAX_STORAGE`]. The CRD's CEL rule on storage sizes says the same.
pub fn is_storage_size(size: &str) -> bool {
    let bytes = |q: &str| parse(q).and_then(Quantity::bytes);
    match (bytes(size), bytes(MIN_STORAGE), bytes(MAX_STORAGE)) {
        (Some(size), Some(min), Some(max)) => (min..=max).contains(&size),
        _ => false,
    }
}

/// Parses the Kubernetes quantity grammar: an optionally signed decimal number followed by a
/// binary suffix (`Ki` … `Ei`), a decimal suffix (`n u m k M G T P E`) or an exponent (`e3`).
/// `None` for anything else (or amounts too large to hold exactly).
pub fn parse(text: &str) -> Option<Quantity> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
        return None;
    }
    let mut mantissa: i128 = 0;
    for digit in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(i128::from(digit - b'0'))?;
    }
    let mut exponent = -i32::try_from(frac_part.len()).ok()?;
    let binary = |power: u32| 1024_i128.checked_pow(power);
    match suffix {
        "" => {}
        "Ki" => mantissa = mantissa.checked_mul(binary(1)?)?,
        "Mi" => mantissa = mantissa.checked_mul(binary(2)?)?,
        "Gi" => mantissa = mantissa.checked_mul(binary(3)?)?,
        "Ti" => mantissa = mantissa.checked_mul(binary(4)?)?,
        "Pi" => mantissa = mantissa.checked_mul(binary(5)?)?,
        "Ei" => mantissa = mantissa.checked_mul(binary(6)?)?,
        "n" => exponent -= 9,
        "u" => exponent -= 6,
        "m" => exponent -= 3,
        "k" => exponent += 3,
        "M" => exponent += 6,
        "G" => exponent += 9,
        "T" => exponent += 12,
        "P" => exponent += 15,
        "E" => exponent += 18,
        exp => {
            let digits = exp.strip_prefix(['e', 'E'])?;
            let (sign, digits) = match digits.strip_prefix('-') {
                Some(d) => (-1, d),
                None => (1, digits.strip_prefix('+').unwrap_or(digits)),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 4
            {
                return None;
            }
            exponent += sign * digits.parse::<i32>().ok()?;
        }
    }
    if mantissa == 0 {
        exponent = 0;
    }
    while mantissa != 0 && mantissa % 10 == 0 {
        mantissa /= 10;
        exponent += 1;
    }
    Some(Quantity {
        mantissa: if negative { -mantissa } else { mantissa },
        exponent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_amounts_parse_equal() {
        let same = [
            ("500m", "0.5"),
            ("1Ki", "1024"),
            ("1k", "1000"),
            ("2e3", "2k"),
            ("1.5Gi", "1536Mi"),
            ("0", "0m"),
            ("100M", "0.1G"),
        ];
        for (a, b) in same {
            assert_eq!(parse(a), parse(b), "{a} vs {b}");
            assert!(parse(a).is_some(), "{a}");
        }
        assert_ne!(parse("1Ki"), parse("1k"));
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "", "Gi", "ten", "1.2.3", "1 Gi", "1GB", "1e", "1e99999", "--1", "1Kii", ".",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn whole_counts_read_either_spelling() {
        let whole = |q: &str| parse(q).and_then(Quantity::whole);
        assert_eq!(whole("3k"), Some(3000));
        assert_eq!(whole("110"), Some(110));
        assert_eq!(whole("1500m"), Some(1));
        assert_eq!(whole("2Ki"), Some(2048));
        assert_eq!(whole("1e-3"), Some(0));
        assert_eq!(whole("1E"), Some(10_i128.pow(18)));
    }

    #[test]
    fn storage_sizes_are_whole_bytes_from_1mi_to_1pi() {
        for size in ["1Mi", "1048576", "10Gi", "1.5Gi", "1Pi", "2e6", "1G"] {
            assert!(is_storage_size(size), "{size}");
        }
        let too_small = ["1Ki", "1048575", "0", "-10Gi", "1M"];
        let fractions = ["100m", "1.5", "1048576.5"];
        let too_large = ["1025Ti", "1E", "1Ei", "1000000Ei"];
        for size in too_small.into_iter().chain(fractions).chain(too_large) {
            assert!(!is_storage_size(size), "{size}");
        }
    }

    #[test]
    fn sign_is_known() {
        assert!(parse("10Gi").is_some_and(Quantity::is_positive));
        assert!(!parse("0").is_some_and(Quantity::is_positive));
        assert!(!parse("-1Gi").is_some_and(Quantity::is_positive));
    }
}
