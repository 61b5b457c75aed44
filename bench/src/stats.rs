//! Percentiles and the side-by-side table every benchmark prints.

use std::time::Duration;

/// Latencies of one kind, in the order measured.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn push(&mut self, sample: Duration) {
        self.0.push(sample);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Nearest-rank percentile: the smallest sample at or above `p`% of
    /// them, so p99 of 30 samples is the largest, never an interpolation.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }
}

impl FromIterator<Duration> for Samples {
    fn from_iter<I: IntoIterator<Item = Duration>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

pub fn ms(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// One line of a result table: what was measured, sandrun's figure, the
/// baseline's, and the goal with whether it was met.
pub struct Row {
    pub metric: String,
    pub sandrun: String,
    pub baseline: String,
    pub ratio: String,
    pub goal: String,
    pub met: Option<bool>,
}

impl Row {
    pub fn new(metric: impl Into<String>, sandrun: impl Into<String>, baseline: impl Into<String>) -> Self {
        Self {
            metric: metric.into(),
            sandrun: sandrun.into(),
            baseline: baseline.into(),
            ratio: String::new(),
            goal: String::new(),
            met: None,
        }
    }

    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = format!("{ratio:.2}");
        self
    }

    pub fn goal(mut self, goal: impl Into<String>, met: bool) -> Self {
        self.goal = goal.into();
        self.met = Some(met);
        self
    }
}

pub fn print_rows(title: &str, rows: &[Row]) {
    println!("\n### {title}\n");
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let verdict = match r.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            };
            vec![
                r.metric.clone(),
                r.sandrun.clone(),
                r.baseline.clone(),
                r.ratio.clone(),
                r.goal.clone(),
                verdict.to_owned(),
            ]
        })
        .collect();
    sandrun_e2e::print_table(&["metric", "sandrun", "baseline", "ratio", "goal", ""], &cells);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(ms: &[u64]) -> Samples {
        ms.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = samples(&[5, 1, 4, 2, 3]);
        assert_eq!(s.percentile(50.0), Duration::from_millis(3));
        assert_eq!(s.percentile(99.0), Duration::from_millis(5));
        assert_eq!(s.percentile(0.0), Duration::from_millis(1));
        let thirty = samples(&(1..=30).collect::<Vec<_>>());
        assert_eq!(thirty.percentile(95.0), Duration::from_millis(29));
        assert_eq!(thirty.percentile(99.0), Duration::from_millis(30));
        assert_eq!(Samples::default().percentile(50.0), Duration::ZERO);
    }

    #[test]
    fn milliseconds_keep_a_sensible_precision() {
        assert_eq!(ms(Duration::from_micros(1_260)), "1.3 ms");
        assert_eq!(ms(Duration::from_millis(2_345)), "2345 ms");
    }
}
