//! The command-line flags of one benchmark: `--name VALUE` pairs and bare switches, read in
//! order, with the errors every benchmark gives the same way.

/// A benchmark's arguments, being read.
pub struct Flags<'a> {
    bench: &'static str,
    it: std::slice::Iter<'a, String>,
}

impl<'a> Flags<'a> {
    /// The arguments of benchmark `bench` (e.g. `"b1"`, for messages).
    pub fn new(bench: &'static str, args: &'a [String]) -> Self {
        Self {
            bench,
            it: args.iter(),
        }
    }

    /// The next flag, if there is one.
    pub fn next_flag(&mut self) -> Option<&'a str> {
        self.it.next().map(String::as_str)
    }

    /// The value that follows `flag`.
    ///
    /// # Errors
    /// When there is none.
    pub fn value(&mut self, flag: &str) -> Result<String, String> {
        self.it
            .next()
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value"))
    }

    /// The number that follows `flag` (`_` may separate digits).
    ///
    /// # Errors
    /// When there is none, or it is not a number.
    pub fn number(&mut self, flag: &str) -> Result<u64, String> {
        let v = self.value(flag)?;
        parse_number(flag, &v)
    }

    /// The comma-separated numbers that follow `flag`.
    ///
    /// # Errors
    /// When there are none, or one is not a number.
    pub fn numbers(&mut self, flag: &str) -> Result<Vec<usize>, String> {
        let v = self.value(flag)?;
        v.split(',')
            .map(|s| parse_number(flag, s.trim()).map(|n| n as usize))
            .collect()
    }

    /// The error for a flag this benchmark does not know.
    pub fn unknown(&self, flag: &str) -> String {
        format!("{}: unknown option '{flag}'", self.bench)
    }
}

fn parse_number(flag: &str, v: &str) -> Result<u64, String> {
    v.replace('_', "")
        .parse::<u64>()
        .map_err(|_| format!("{flag}: '{v}' is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_numbers_and_lists() {
        let args: Vec<String> = ["--rounds", "1_000", "--scales", "10, 100", "--x", "--n"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut f = Flags::new("bx", &args);
        assert_eq!(f.next_flag(), Some("--rounds"));
        assert_eq!(f.number("--rounds"), Ok(1000));
        assert_eq!(f.next_flag(), Some("--scales"));
        assert_eq!(f.numbers("--scales"), Ok(vec![10, 100]));
        assert_eq!(f.next_flag(), Some("--x"));
        assert_eq!(f.unknown("--x"), "bx: unknown option '--x'");
        assert_eq!(f.next_flag(), Some("--n"));
        assert_eq!(f.number("--n"), Err("--n needs a value".into()));
        assert_eq!(f.next_flag(), None);
        assert_eq!(
            parse_number("--n", "ten"),
            Err("--n: 'ten' is not a number".into())
        );
    }
}
